// Steps every completion body shares: a JSON object, a known model, max_tokens in range.
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";

export const MODEL_NOT_EXIST = "Model Not Exist";

export const maxTokensOutOfRange = (max: number) => `Invalid max_tokens value, the valid range of max_tokens is [1, ${max}]`;

export function requireJsonObject(body: unknown): Record<string, unknown> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw badRequest("Failed to deserialize the JSON body into the target type: the request body must be a JSON object");
  }
  return body as Record<string, unknown>;
}

export function resolveModel(id: string, models: ReadonlyMap<string, Model>): Model {
  const model = models.get(id);
  if (!model || !model.enabled) throw badRequest(MODEL_NOT_EXIST, "model");
  return model;
}

/** The contract makes max_tokens out of range a 400 (not 422), with the model's upper bound. */
export function checkMaxTokens(value: number | null | undefined, defaultValue: number, max: number): number {
  if (value === undefined || value === null) return Math.min(defaultValue, max);
  if (value < 1 || value > max) throw badRequest(maxTokensOutOfRange(max), "max_tokens");
  return value;
}

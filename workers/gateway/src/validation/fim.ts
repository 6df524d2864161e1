// validateFimRequest: POST /beta/completions (fill in the middle). deepseek-chat only; the
// completion is capped at 4096 tokens whatever the model's chat limit.
import { z } from "zod";
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";
import { UPSTREAM_STREAM_OPTIONS, integer, integerInRange, samplingFields, setFields, stopSchema, streamFields } from "./fields";
import { checkMaxTokens, requireJsonObject, resolveModel } from "./request";
import { parseOrThrow } from "./zod-issues";

export const FIM_MAX_TOKENS = 4096;
export const FIM_MAX_LOGPROBS = 20;

export const fimRequestSchema = z.object({
  model: z.string(),
  prompt: z.string(),
  suffix: z.string().nullish(),
  max_tokens: integer().nullish(),
  echo: z.boolean().nullish(),
  logprobs: integerInRange("logprobs", 0, FIM_MAX_LOGPROBS).nullish(),
  ...samplingFields,
  stop: stopSchema.nullish(),
  ...streamFields,
});

export type FimRequest = z.output<typeof fimRequestSchema>;

export interface FimValidationContext {
  models: ReadonlyMap<string, Model>;
}

export interface ValidatedFim {
  model: Model;
  prompt: string;
  suffix: string | null;
  maxTokens: number;
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  /** How many top alternatives to return per token; null when logprobs were not asked for. */
  logprobs: number | null;
  upstreamBody: Record<string, unknown>;
}

export function validateFimRequest(body: unknown, ctx: FimValidationContext): ValidatedFim {
  const request = parseOrThrow(fimRequestSchema, requireJsonObject(body));
  const model = resolveModel(request.model, ctx.models);
  if (!model.supportsFim) throw badRequest(`FIM completion is not supported by this model (${model.id})`, "model");
  const maxTokens = checkMaxTokens(request.max_tokens, model.defaultMaxTokens, Math.min(FIM_MAX_TOKENS, model.maxMaxTokens));

  const upstreamBody: Record<string, unknown> = { model: model.id, prompt: request.prompt };
  setFields(upstreamBody, request, ["suffix"]);
  upstreamBody.max_tokens = maxTokens;
  setFields(upstreamBody, request, ["echo", "logprobs", ...Object.keys(samplingFields), "stop"]);
  upstreamBody.stream = true;
  upstreamBody.stream_options = { ...UPSTREAM_STREAM_OPTIONS };

  const stream = request.stream === true;
  return {
    model,
    prompt: request.prompt,
    suffix: request.suffix ?? null,
    maxTokens,
    stream,
    includeUsage: stream && request.stream_options?.include_usage === true,
    echo: request.echo === true,
    logprobs: request.logprobs ?? null,
    upstreamBody,
  };
}

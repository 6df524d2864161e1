// The seeded model registry (migrations/0001_seed_models.sql) as a map, and helpers to
// assert on the ApiError a validator throws.
import { expect } from "vitest";
import type { Model } from "../../../workers/gateway/src/db/schema";
import { ApiError } from "../../../workers/gateway/src/errors/api-error";

const common = { ownedBy: "deepseek", contextLength: 65536, defaultMaxTokens: 4096, maxMaxTokens: 8192, enabled: true, createdAt: 0 };

export const chatModel: Model = {
  ...common,
  id: "deepseek-chat",
  maxReasoningTokens: 0,
  isReasoner: false,
  supportsTools: true,
  supportsJsonOutput: true,
  supportsFim: true,
  cacheHitPrice: 70000,
  cacheMissPrice: 270000,
  outputPrice: 1100000,
  offPeakDiscountPercent: 50,
};

export const reasonerModel: Model = {
  ...common,
  id: "deepseek-reasoner",
  maxReasoningTokens: 32768,
  isReasoner: true,
  supportsTools: false,
  supportsJsonOutput: false,
  supportsFim: false,
  cacheHitPrice: 140000,
  cacheMissPrice: 550000,
  outputPrice: 2190000,
  offPeakDiscountPercent: 75,
};

export const models: ReadonlyMap<string, Model> = new Map([
  [chatModel.id, chatModel],
  [reasonerModel.id, reasonerModel],
]);

export function thrown(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ApiError);
    return err as ApiError;
  }
  throw new Error("expected the validator to throw");
}

export function expectError(fn: () => unknown, status: number, message: string | RegExp): ApiError {
  const err = thrown(fn);
  expect({ status: err.status, message: err.message }).toEqual({
    status,
    message: typeof message === "string" ? message : expect.stringMatching(message),
  });
  return err;
}

// Prices come from the model registry: micro-USD per 1M tokens for cache-hit input, cache-miss
// input and output, plus an off-peak discount in percent (16:30 to 00:30 UTC, decided by the
// completion timestamp).
//
// Rounding, defined once: a request's cost is the exact rational
//   (hit * hitPrice + miss * missPrice + completion * outputPrice) * (100 - discount%) / (1e6 * 100)
// micro-USD, rounded half-up to a whole micro-unit. Per request, not per token class, so the
// usage row, the settlement and the daily roll-up all carry the same integer. Reservations use
// the standard tier rounded up, so a settlement never exceeds the reservation for the same tokens.
import type { Model } from "../db/schema";
import { normalizeUsage, type Usage } from "./usage";

export type PriceTier = "standard" | "off_peak";

const TOKENS_PER_PRICE_UNIT = 1_000_000n;
const DAY_MS = 86_400_000;
const OFF_PEAK_START_MS = (16 * 60 + 30) * 60_000; // 16:30 UTC
const OFF_PEAK_END_MS = 30 * 60_000; // 00:30 UTC, the next day

export type Prices = Pick<Model, "cacheHitPrice" | "cacheMissPrice" | "outputPrice" | "offPeakDiscountPercent" | "maxReasoningTokens">;

export function isOffPeak(ms: number): boolean {
  const msOfDay = ((ms % DAY_MS) + DAY_MS) % DAY_MS;
  return msOfDay >= OFF_PEAK_START_MS || msOfDay < OFF_PEAK_END_MS;
}

function divideHalfUp(numerator: bigint, denominator: bigint): bigint {
  return (2n * numerator + denominator) / (2n * denominator);
}

function divideUp(numerator: bigint, denominator: bigint): bigint {
  return (numerator + denominator - 1n) / denominator;
}

function toMicros(value: bigint): number {
  const micros = Number(value);
  if (!Number.isSafeInteger(micros)) throw new Error(`cost out of range: ${value}`);
  return micros;
}

// Every token a request may emit: max_tokens, plus a reasoner's chain of thought.
export function maxCompletionTokens(model: Prices, maxTokens: number): number {
  return maxTokens + model.maxReasoningTokens;
}

// The most a request can cost: all prompt tokens at the cache-miss price and every possible
// completion token at the output price, standard tier, rounded up.
export function worstCaseCostMicros(model: Prices, promptTokens: number, maxCompletionTokens: number): number {
  const numerator = BigInt(promptTokens) * BigInt(model.cacheMissPrice) + BigInt(maxCompletionTokens) * BigInt(model.outputPrice);
  return toMicros(divideUp(numerator, TOKENS_PER_PRICE_UNIT));
}

export function priceUsage(model: Prices, usage: Usage, completedAtMs: number): { costMicros: number; tier: PriceTier } {
  const u = normalizeUsage(usage);
  const tier: PriceTier = isOffPeak(completedAtMs) && model.offPeakDiscountPercent > 0 ? "off_peak" : "standard";
  const payablePercent = BigInt(100 - (tier === "off_peak" ? model.offPeakDiscountPercent : 0));
  const listPrice =
    BigInt(u.cacheHitTokens) * BigInt(model.cacheHitPrice) +
    BigInt(u.cacheMissTokens) * BigInt(model.cacheMissPrice) +
    BigInt(u.completionTokens) * BigInt(model.outputPrice);
  return { costMicros: toMicros(divideHalfUp(listPrice * payablePercent, TOKENS_PER_PRICE_UNIT * 100n)), tier };
}

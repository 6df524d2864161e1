import { gatewayEnv as env } from "./ledger-helpers";
import { describe, expect, it } from "vitest";
import { findModel } from "../../../workers/gateway/src/db/models";
import type { Model } from "../../../workers/gateway/src/db/schema";
import { isOffPeak, maxCompletionTokens, priceUsage, worstCaseCostMicros } from "../../../workers/gateway/src/billing/pricing";
import type { Usage } from "../../../workers/gateway/src/billing/usage";

const at = (h: number, m: number, s: number, ms = 0) => Date.UTC(2025, 3, 1, h, m, s, ms);
const PEAK = at(12, 0, 0);
const OFF_PEAK = at(20, 0, 0);

function usage(parts: Partial<Usage>): Usage {
  const hit = parts.cacheHitTokens ?? 0;
  const miss = parts.cacheMissTokens ?? 0;
  return { promptTokens: hit + miss, cacheHitTokens: hit, cacheMissTokens: miss, completionTokens: 0, reasoningTokens: 0, ...parts };
}

async function registry(): Promise<{ chat: Model; reasoner: Model }> {
  return { chat: (await findModel(env.DB, "deepseek-chat"))!, reasoner: (await findModel(env.DB, "deepseek-reasoner"))! };
}

describe("off-peak window (16:30 to 00:30 UTC)", () => {
  it("switches exactly at the boundaries", () => {
    expect(isOffPeak(at(16, 29, 59))).toBe(false);
    expect(isOffPeak(at(16, 29, 59, 999))).toBe(false);
    expect(isOffPeak(at(16, 30, 0))).toBe(true);
    expect(isOffPeak(at(23, 59, 59, 999))).toBe(true);
    expect(isOffPeak(at(0, 0, 0))).toBe(true);
    expect(isOffPeak(at(0, 29, 59))).toBe(true);
    expect(isOffPeak(at(0, 29, 59, 999))).toBe(true);
    expect(isOffPeak(at(0, 30, 0))).toBe(false);
    expect(isOffPeak(PEAK)).toBe(false);
  });

  it("prices by the completion timestamp at each boundary", async () => {
    const { chat, reasoner } = await registry();
    const oneMillionOut = usage({ completionTokens: 1_000_000 });
    expect(priceUsage(chat, oneMillionOut, at(16, 29, 59))).toEqual({ costMicros: 1_100_000, tier: "standard" });
    expect(priceUsage(chat, oneMillionOut, at(16, 30, 0))).toEqual({ costMicros: 550_000, tier: "off_peak" });
    expect(priceUsage(chat, oneMillionOut, at(0, 29, 59))).toEqual({ costMicros: 550_000, tier: "off_peak" });
    expect(priceUsage(chat, oneMillionOut, at(0, 30, 0))).toEqual({ costMicros: 1_100_000, tier: "standard" });
    expect(priceUsage(reasoner, oneMillionOut, at(16, 29, 59))).toEqual({ costMicros: 2_190_000, tier: "standard" });
    expect(priceUsage(reasoner, oneMillionOut, at(16, 30, 0))).toEqual({ costMicros: 547_500, tier: "off_peak" });
    expect(priceUsage(reasoner, oneMillionOut, at(0, 29, 59))).toEqual({ costMicros: 547_500, tier: "off_peak" });
    expect(priceUsage(reasoner, oneMillionOut, at(0, 30, 0))).toEqual({ costMicros: 2_190_000, tier: "standard" });
  });
});

describe("priceUsage", () => {
  it("applies the contract's prices per 1M tokens to hit, miss and output tokens", async () => {
    const { chat, reasoner } = await registry();
    const million = usage({ cacheHitTokens: 1_000_000, cacheMissTokens: 1_000_000, completionTokens: 1_000_000 });
    expect(priceUsage(chat, million, PEAK).costMicros).toBe(70_000 + 270_000 + 1_100_000);
    expect(priceUsage(reasoner, million, PEAK).costMicros).toBe(140_000 + 550_000 + 2_190_000);
    expect(priceUsage(chat, million, OFF_PEAK).costMicros).toBe((70_000 + 270_000 + 1_100_000) / 2);
    expect(priceUsage(reasoner, million, OFF_PEAK).costMicros).toBe((140_000 + 550_000 + 2_190_000) / 4);
  });

  it("bills reasoning tokens as output, once (they are part of completion_tokens)", async () => {
    const { reasoner } = await registry();
    const withReasoning = usage({ cacheMissTokens: 100, completionTokens: 1000, reasoningTokens: 800 });
    expect(priceUsage(reasoner, withReasoning, PEAK).costMicros).toBe(55 + 2190);
    // A worker that reports reasoning larger than completion is billed for the reasoning.
    const inconsistent = usage({ completionTokens: 10, reasoningTokens: 1000 });
    expect(priceUsage(reasoner, inconsistent, PEAK).costMicros).toBe(2190);
  });

  it("rounds the exact per-request rational half-up to a micro-unit", async () => {
    const { chat, reasoner } = await registry();
    expect(priceUsage(chat, usage({ completionTokens: 5 }), PEAK).costMicros).toBe(6); // 5.5
    expect(priceUsage(chat, usage({ completionTokens: 4 }), PEAK).costMicros).toBe(4); // 4.4
    expect(priceUsage(chat, usage({ completionTokens: 5 }), OFF_PEAK).costMicros).toBe(3); // 2.75
    expect(priceUsage(chat, usage({ completionTokens: 1 }), OFF_PEAK).costMicros).toBe(1); // 0.55
    expect(priceUsage(reasoner, usage({ completionTokens: 2 }), OFF_PEAK).costMicros).toBe(1); // 1.095
    // Per request, not per token class: 0.42 + 0.27 = 0.69 -> 1 (per class would give 0).
    expect(priceUsage(chat, usage({ cacheHitTokens: 6, cacheMissTokens: 1 }), PEAK).costMicros).toBe(1);
    expect(priceUsage(chat, usage({ cacheHitTokens: 7 }), PEAK).costMicros).toBe(0); // 0.49
    expect(priceUsage(chat, usage({}), PEAK)).toEqual({ costMicros: 0, tier: "standard" });
  });

  it("counts prompt tokens not reported as hits as misses", async () => {
    const { chat } = await registry();
    const partial: Usage = { promptTokens: 1000, cacheHitTokens: 0, cacheMissTokens: 0, completionTokens: 0, reasoningTokens: 0 };
    expect(priceUsage(chat, partial, PEAK).costMicros).toBe(270);
  });

  it("refuses counts that are not non-negative integers", async () => {
    const { chat } = await registry();
    expect(() => priceUsage(chat, usage({ completionTokens: -1 }), PEAK)).toThrow();
    expect(() => priceUsage(chat, usage({ completionTokens: 1.5 }), PEAK)).toThrow();
  });
});

describe("worstCaseCostMicros", () => {
  it("prices the whole prompt as misses and every possible completion token as output, rounded up", async () => {
    const { chat, reasoner } = await registry();
    expect(worstCaseCostMicros(chat, 1000, 4096)).toBe(4776); // 270 + 4505.6 = 4775.6
    expect(maxCompletionTokens(reasoner, 4096)).toBe(4096 + 32768);
    expect(worstCaseCostMicros(reasoner, 1000, maxCompletionTokens(reasoner, 4096))).toBe(81283); // 550 + 80732.16
  });

  it("is never below the settled cost of any usage within it, at any hour", async () => {
    const { chat, reasoner } = await registry();
    for (const model of [chat, reasoner]) {
      for (let i = 0; i < 500; i++) {
        const prompt = Math.floor(Math.random() * 70_000);
        const maxOut = 1 + Math.floor(Math.random() * 40_000);
        const hit = Math.floor(Math.random() * (prompt + 1));
        const completion = Math.floor(Math.random() * (maxOut + 1));
        const u = usage({ cacheHitTokens: hit, cacheMissTokens: prompt - hit, completionTokens: completion });
        expect(priceUsage(model, u, PEAK).costMicros).toBeLessThanOrEqual(worstCaseCostMicros(model, prompt, maxOut));
      }
    }
  });
});

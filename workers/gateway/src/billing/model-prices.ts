// A model's prices as the ledger settles with them, read from the registry in D1 and kept a
// minute. Read without the `enabled` filter: a model switched off mid-request is still settled.
import type { Prices } from "./pricing";

const MODEL_CACHE_MS = 60_000;

export class PriceCache {
  private readonly cache = new Map<string, { prices: Prices; fetchedAt: number }>();

  constructor(private readonly db: () => D1Database) {}

  async of(modelId: string): Promise<Prices> {
    const cached = this.cache.get(modelId);
    if (cached && Date.now() - cached.fetchedAt < MODEL_CACHE_MS) return cached.prices;
    const row = await this.db()
      .prepare(
        `SELECT cache_hit_price, cache_miss_price, output_price, off_peak_discount_percent, max_reasoning_tokens
           FROM models WHERE id = ?`,
      )
      .bind(modelId)
      .first<{ cache_hit_price: number; cache_miss_price: number; output_price: number; off_peak_discount_percent: number; max_reasoning_tokens: number }>();
    if (!row) throw new Error(`settlement for unknown model ${modelId}`);
    const prices: Prices = {
      cacheHitPrice: row.cache_hit_price,
      cacheMissPrice: row.cache_miss_price,
      outputPrice: row.output_price,
      offPeakDiscountPercent: row.off_peak_discount_percent,
      maxReasoningTokens: row.max_reasoning_tokens,
    };
    this.cache.set(modelId, { prices, fetchedAt: Date.now() });
    return prices;
  }
}

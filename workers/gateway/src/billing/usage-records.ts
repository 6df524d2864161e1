// Usage records in D1: one row per request (usage_records) and daily roll-ups per account, key
// and model (usage_daily). Both are written by the account ledger's outbox, in one D1 batch per
// delivery, so that a delivery repeated after a lost acknowledgement changes nothing: the row
// is INSERT OR IGNORE by request id, and the roll-up only adds when that insert wrote a row.
import type { UsageRecord } from "../db/schema";

export type UsageRow = Required<Pick<UsageRecord, keyof UsageRecord>> & { keyId: string | null; workerId: string | null };

// The UTC calendar day of a timestamp, YYYY-MM-DD: the roll-up's day is the completion day.
export function usageDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function usageStatements(db: D1Database, row: UsageRow): D1PreparedStatement[] {
  const insertRow = db
    .prepare(
      `INSERT OR IGNORE INTO usage_records
         (request_id, account_id, key_id, model, endpoint, cache_hit_tokens, cache_miss_tokens, completion_tokens,
          reasoning_tokens, cost_micros, price_tier, status, worker_id, started_at, completed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      row.requestId,
      row.accountId,
      row.keyId,
      row.model,
      row.endpoint,
      row.cacheHitTokens,
      row.cacheMissTokens,
      row.completionTokens,
      row.reasoningTokens,
      row.costMicros,
      row.priceTier,
      row.status,
      row.workerId,
      row.startedAt,
      row.completedAt,
    );
  // changes() is the row count of the statement just before, in the same batch transaction:
  // 1 when the usage row is new, 0 when it was already there (then the roll-up has it too).
  const rollUp = db
    .prepare(
      `INSERT INTO usage_daily
         (day, account_id, key_id, model, requests, cache_hit_tokens, cache_miss_tokens, completion_tokens, reasoning_tokens, cost_micros)
       SELECT ?, ?, ?, ?, 1, ?, ?, ?, ?, ? WHERE changes() = 1
       ON CONFLICT (day, account_id, key_id, model) DO UPDATE SET
         requests = requests + 1,
         cache_hit_tokens = cache_hit_tokens + excluded.cache_hit_tokens,
         cache_miss_tokens = cache_miss_tokens + excluded.cache_miss_tokens,
         completion_tokens = completion_tokens + excluded.completion_tokens,
         reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
         cost_micros = cost_micros + excluded.cost_micros`,
    )
    .bind(
      usageDay(row.completedAt),
      row.accountId,
      row.keyId ?? "",
      row.model,
      row.cacheHitTokens,
      row.cacheMissTokens,
      row.completionTokens,
      row.reasoningTokens,
      row.costMicros,
    );
  return [insertRow, rollUp];
}

// Usage records in D1: one row per request (usage_records) and daily roll-ups per account, key
// and model (usage_daily). Both are written by the account ledger's outbox, in one D1 batch per
// delivery, so that a delivery repeated after a lost acknowledgement changes nothing: a row is
// INSERT OR IGNORE by request id, and the roll-up only counts rows not recorded yet.
//
// A delivery carries many rows as one JSON array bound to one parameter, read with json_each:
// two statements per delivery instead of two per row (each statement is a round of binding and
// encoding in the D1 client, a fifth of the gateway's CPU per request when it was per row).
import type { UsageRecord } from "../db/schema";

export type UsageRow = Required<Pick<UsageRecord, keyof UsageRecord>> & { keyId: string | null; workerId: string | null };

// The roll-up's day is the UTC calendar day of completion (YYYY-MM-DD).
const ROLL_UP = `
  INSERT INTO usage_daily
    (day, account_id, key_id, model, requests, cache_hit_tokens, cache_miss_tokens, completion_tokens, reasoning_tokens, cost_micros)
  SELECT date(r.value ->> 'completedAt' / 1000, 'unixepoch'), r.value ->> 'accountId', coalesce(r.value ->> 'keyId', ''),
         r.value ->> 'model', count(*), sum(r.value ->> 'cacheHitTokens'), sum(r.value ->> 'cacheMissTokens'),
         sum(r.value ->> 'completionTokens'), sum(r.value ->> 'reasoningTokens'), sum(r.value ->> 'costMicros')
    FROM json_each(?1) AS r
   WHERE NOT EXISTS (SELECT 1 FROM usage_records u WHERE u.request_id = r.value ->> 'requestId')
   GROUP BY 1, 2, 3, 4
  ON CONFLICT (day, account_id, key_id, model) DO UPDATE SET
    requests = requests + excluded.requests,
    cache_hit_tokens = cache_hit_tokens + excluded.cache_hit_tokens,
    cache_miss_tokens = cache_miss_tokens + excluded.cache_miss_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
    cost_micros = cost_micros + excluded.cost_micros`;

const INSERT_ROWS = `
  INSERT OR IGNORE INTO usage_records
    (request_id, account_id, key_id, model, endpoint, cache_hit_tokens, cache_miss_tokens, completion_tokens,
     reasoning_tokens, usage_source, cost_micros, price_tier, status, worker_id, started_at, completed_at)
  SELECT r.value ->> 'requestId', r.value ->> 'accountId', r.value ->> 'keyId', r.value ->> 'model', r.value ->> 'endpoint',
         r.value ->> 'cacheHitTokens', r.value ->> 'cacheMissTokens', r.value ->> 'completionTokens',
         r.value ->> 'reasoningTokens', coalesce(r.value ->> 'usageSource', 'upstream'), r.value ->> 'costMicros', r.value ->> 'priceTier', r.value ->> 'status',
         r.value ->> 'workerId', r.value ->> 'startedAt', r.value ->> 'completedAt'
    FROM json_each(?1) AS r`;

// `rowsJson`: a JSON array of UsageRow objects with distinct request ids. The roll-up runs first,
// so that it still sees which rows are new; the batch is one transaction.
export function usageStatements(db: D1Database, rowsJson: string): D1PreparedStatement[] {
  return [db.prepare(ROLL_UP).bind(rowsJson), db.prepare(INSERT_ROWS).bind(rowsJson)];
}

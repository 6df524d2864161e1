// Many usage rows at once: one INSERT that generates them in SQL (a recursive CTE), so 100,000
// rows take well under a second. Request ids are `<prefix>-<6-digit index>`; row i completes at
// firstAt + i * stepMs and costs i micro-USD.
import { env } from "cloudflare:test";

export interface UsageRowsSpec {
  accountId: string;
  count: number;
  firstAt: number;
  stepMs: number;
  prefix: string;
  keyId?: string | null;
  model?: string;
}

export async function insertUsageRows(spec: UsageRowsSpec): Promise<void> {
  await env.DB.prepare(
    `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
     INSERT INTO usage_records (request_id, account_id, key_id, model, endpoint, cache_hit_tokens, cache_miss_tokens,
       completion_tokens, reasoning_tokens, cost_micros, price_tier, status, worker_id, started_at, completed_at)
     SELECT ? || '-' || printf('%06d', i), ?, ?, ?, '/chat/completions', 64, 10, 5, 0, i, 'standard', 'ok', 'w1',
            ? + i * ? - 500, ? + i * ?
       FROM n`,
  )
    .bind(spec.count, spec.prefix, spec.accountId, spec.keyId ?? null, spec.model ?? "deepseek-chat", spec.firstAt, spec.stepMs, spec.firstAt, spec.stepMs)
    .run();
}

// Live API keys as D1 holds them: a key that is not revoked, with its account's facts and the
// rate limits of the account and of the key. Both ways of reading keys share this shape: by
// hash for a key not seen before (authenticate.ts), by account for its live keys (live-keys.ts).
import type { AuthenticatedKey } from "../env";

export const SELECT_LIVE_KEYS = `SELECT k.id AS key_id, k.account_id, a.cache_namespace, k.last_used_at,
       a.rpm_limit AS rpm, a.tpm_limit AS tpm, a.concurrency_limit AS concurrency,
       k.rpm_limit AS key_rpm, k.tpm_limit AS key_tpm, k.concurrency_limit AS key_concurrency
  FROM api_keys k JOIN accounts a ON a.id = k.account_id
 WHERE k.revoked_at IS NULL`;

export interface LiveKeyRow {
  key_id: string;
  account_id: string;
  cache_namespace: string;
  last_used_at: number | null;
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
  key_rpm: number | null;
  key_tpm: number | null;
  key_concurrency: number | null;
}

export function toAuthenticatedKey(row: LiveKeyRow): AuthenticatedKey {
  return {
    keyId: row.key_id,
    accountId: row.account_id,
    cacheNamespace: row.cache_namespace,
    limits: { rpm: row.rpm, tpm: row.tpm, concurrency: row.concurrency },
    keyLimits: { rpm: row.key_rpm, tpm: row.key_tpm, concurrency: row.key_concurrency },
  };
}

// Middleware: turns the presented API key into an account. Keys are accepted as
// `Authorization: Bearer sk-...` and as `x-api-key` (the Anthropic SDKs send the latter).
// Lookup is by hash on every request, so a revoked key fails on the very next request.
import { createMiddleware } from "hono/factory";
import { authenticationFails } from "../errors/api-error";
import type { AppEnv } from "../env";
import { API_KEY_PATTERN, sha256Hex } from "./api-keys";

const LAST_USED_RESOLUTION_MS = 60_000;

export function presentedKey(headers: Headers): string | null {
  const authorization = headers.get("authorization");
  if (authorization) {
    const match = /^Bearer\s+(.+)$/i.exec(authorization.trim());
    return match?.[1]?.trim() ?? authorization.trim();
  }
  return headers.get("x-api-key")?.trim() ?? null;
}

interface KeyRow {
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

export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const started = performance.now();
  const key = presentedKey(c.req.raw.headers);
  if (!key || !API_KEY_PATTERN.test(key)) throw authenticationFails(key);

  const row = await c.env.DB.prepare(
    `SELECT k.id AS key_id, k.account_id, a.cache_namespace, k.last_used_at,
            a.rpm_limit AS rpm, a.tpm_limit AS tpm, a.concurrency_limit AS concurrency,
            k.rpm_limit AS key_rpm, k.tpm_limit AS key_tpm, k.concurrency_limit AS key_concurrency
       FROM api_keys k JOIN accounts a ON a.id = k.account_id
      WHERE k.key_hash = ? AND k.revoked_at IS NULL`,
  )
    .bind(await sha256Hex(key))
    .first<KeyRow>();
  if (!row) throw authenticationFails(key);

  c.get("timings").auth = performance.now() - started;
  c.set("auth", {
    keyId: row.key_id,
    accountId: row.account_id,
    cacheNamespace: row.cache_namespace,
    limits: { rpm: row.rpm, tpm: row.tpm, concurrency: row.concurrency },
    keyLimits: { rpm: row.key_rpm, tpm: row.key_tpm, concurrency: row.key_concurrency },
  });

  const now = Date.now();
  if (!row.last_used_at || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
    const touch = c.env.DB.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?").bind(now, row.key_id).run();
    c.executionCtx.waitUntil(touch.catch(() => undefined));
  }
  await next();
});

// Middleware: turns the presented API key into an account. Keys are accepted as
// `Authorization: Bearer sk-...` and as `x-api-key` (the Anthropic SDKs send the latter).
// Lookup is by hash on every request, so a revoked key fails on the very next request.
//
// A key seen before in this isolate does not wait for that lookup on inference requests
// (POST): its account, key id and cache namespace never change, so the pipeline can validate,
// count and start admission and reservation while the lookup runs. The lookup still decides:
// the pipeline awaits `keyCheck` before forwarding anything (undoing admission and reservation
// when the key is refused, re-admitting when its limits changed), and whatever a route
// answered, a refused key gets a 401 instead.
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { authenticationFails } from "../errors/api-error";
import type { AppEnv, AuthenticatedKey } from "../env";
import { API_KEY_PATTERN, sha256Hex } from "./api-keys";

const LAST_USED_RESOLUTION_MS = 60_000;
// Bounds the isolate's memory; a cleared cache only means one request waits for its lookup.
const KNOWN_KEYS_MAX = 10_000;

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

// By key hash: a key's immutable facts, with the limits its last lookup read (a guess, checked).
const knownKeys = new Map<string, AuthenticatedKey>();

export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const key = presentedKey(c.req.raw.headers);
  if (!key || !API_KEY_PATTERN.test(key)) throw authenticationFails(key);
  const keyHash = await sha256Hex(key);

  const keyCheck = lookUpKey(c, key, keyHash);
  keyCheck.catch(() => undefined); // awaited below or by the pipeline; never unhandled
  c.set("keyCheck", keyCheck);

  const known = c.req.method === "POST" ? knownKeys.get(keyHash) : undefined;
  if (!known) {
    c.set("auth", await keyCheck);
    await next();
    return;
  }
  c.set("auth", known);
  await next();
  await keyCheck; // refused: this throws, and the error handler answers 401
});

// The authoritative lookup: the key exists and is not revoked, with its current limits.
async function lookUpKey(c: Context<AppEnv>, key: string, keyHash: string): Promise<AuthenticatedKey> {
  const started = performance.now();
  const row = await c.env.DB.prepare(
    `SELECT k.id AS key_id, k.account_id, a.cache_namespace, k.last_used_at,
            a.rpm_limit AS rpm, a.tpm_limit AS tpm, a.concurrency_limit AS concurrency,
            k.rpm_limit AS key_rpm, k.tpm_limit AS key_tpm, k.concurrency_limit AS key_concurrency
       FROM api_keys k JOIN accounts a ON a.id = k.account_id
      WHERE k.key_hash = ? AND k.revoked_at IS NULL`,
  )
    .bind(keyHash)
    .first<KeyRow>();
  c.get("timings").auth = performance.now() - started;
  if (!row) {
    knownKeys.delete(keyHash);
    throw authenticationFails(key);
  }

  const auth: AuthenticatedKey = {
    keyId: row.key_id,
    accountId: row.account_id,
    cacheNamespace: row.cache_namespace,
    limits: { rpm: row.rpm, tpm: row.tpm, concurrency: row.concurrency },
    keyLimits: { rpm: row.key_rpm, tpm: row.key_tpm, concurrency: row.key_concurrency },
  };
  if (!knownKeys.has(keyHash) && knownKeys.size >= KNOWN_KEYS_MAX) knownKeys.clear();
  knownKeys.set(keyHash, auth);

  const now = Date.now();
  if (!row.last_used_at || now - row.last_used_at > LAST_USED_RESOLUTION_MS) {
    const touch = c.env.DB.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?").bind(now, row.key_id).run();
    c.executionCtx.waitUntil(touch.catch(() => undefined));
  }
  return auth;
}

// Whether admission under `a` is admission under `b`: same scopes, same limits.
export function sameLimits(a: AuthenticatedKey, b: AuthenticatedKey): boolean {
  const same = (x: AuthenticatedKey["limits"], y: AuthenticatedKey["limits"]) => x.rpm === y.rpm && x.tpm === y.tpm && x.concurrency === y.concurrency;
  return a.keyId === b.keyId && same(a.limits, b.limits) && same(a.keyLimits, b.keyLimits);
}

// Middleware: turns the presented API key into an account. Keys are accepted as
// `Authorization: Bearer sk-...` and as `x-api-key` (the Anthropic SDKs send the latter).
//
// Every request is checked against the key's current state, so a revoked key fails on the very
// next request. A key this isolate has not seen is looked up in D1 by hash; after that its
// account facts (which never change) are known here, and each request is checked by the
// account's AccountKeys Durable Object (auth/account-keys.ts): a memory lookup, no D1 query.
//
// A known key also does not wait for its check on inference requests (POST): the pipeline can
// validate, count and start admission and reservation while the check runs. The check still
// decides: the pipeline awaits `keyCheck` before forwarding anything (undoing admission and
// reservation when the key is refused, re-admitting when its limits changed), and whatever a
// route answered, a refused key gets a 401 instead.
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { authenticationFails } from "../errors/api-error";
import type { AppEnv, AuthenticatedKey } from "../env";
import { accountKeysFor } from "./account-keys";
import { API_KEY_PATTERN, sha256Hex } from "./api-keys";
import { SELECT_LIVE_KEYS, toAuthenticatedKey, type LiveKeyRow } from "./key-rows";

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

// By key hash: a key's immutable facts, with the limits its last lookup read (a guess, checked).
const knownKeys = new Map<string, AuthenticatedKey>();
// By key id: when this isolate last wrote (or read) the key's last_used_at.
const lastUsedAt = new Map<string, number>();

export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const key = presentedKey(c.req.raw.headers);
  if (!key || !API_KEY_PATTERN.test(key)) throw authenticationFails(key);
  const keyHash = await sha256Hex(key);

  const known = knownKeys.get(keyHash);
  const keyCheck = known ? checkKnownKey(c, key, keyHash, known) : lookUpKey(c, key, keyHash);
  keyCheck.catch(() => undefined); // awaited below or by the pipeline; never unhandled
  c.set("keyCheck", keyCheck);

  if (!known || c.req.method !== "POST") {
    c.set("auth", await keyCheck);
    await next();
    return;
  }
  c.set("auth", known);
  await next();
  await keyCheck; // refused: this throws, and the error handler answers 401
});

// A key seen before: its account's live keys decide, with the current limits.
async function checkKnownKey(c: Context<AppEnv>, key: string, keyHash: string, known: AuthenticatedKey): Promise<AuthenticatedKey> {
  const started = performance.now();
  const live = await accountKeysFor(c.env, known.accountId).check(known.accountId, known.keyId);
  c.get("timings").auth = performance.now() - started;
  if (!live) {
    knownKeys.delete(keyHash);
    throw authenticationFails(key);
  }
  knownKeys.set(keyHash, live);
  touchLastUsed(c, live.keyId, null);
  return live;
}

// A key not seen before: by hash in D1, not revoked, with its current limits.
async function lookUpKey(c: Context<AppEnv>, key: string, keyHash: string): Promise<AuthenticatedKey> {
  const started = performance.now();
  const row = await c.env.DB.prepare(`${SELECT_LIVE_KEYS} AND k.key_hash = ?`).bind(keyHash).first<LiveKeyRow>();
  c.get("timings").auth = performance.now() - started;
  if (!row) {
    knownKeys.delete(keyHash);
    throw authenticationFails(key);
  }

  const auth = toAuthenticatedKey(row);
  if (!knownKeys.has(keyHash) && knownKeys.size >= KNOWN_KEYS_MAX) {
    knownKeys.clear();
    lastUsedAt.clear();
  }
  knownKeys.set(keyHash, auth);
  touchLastUsed(c, auth.keyId, row.last_used_at);
  return auth;
}

// `last_used_at` for the dashboard, to the minute: one D1 write per key and minute, not per request.
function touchLastUsed(c: Context<AppEnv>, keyId: string, storedAt: number | null): void {
  const now = Date.now();
  const last = lastUsedAt.get(keyId) ?? storedAt ?? 0;
  if (now - last <= LAST_USED_RESOLUTION_MS) {
    lastUsedAt.set(keyId, last);
    return;
  }
  lastUsedAt.set(keyId, now);
  const touch = c.env.DB.prepare("UPDATE api_keys SET last_used_at = ? WHERE id = ?").bind(now, keyId).run();
  c.executionCtx.waitUntil(touch.catch(() => undefined));
}

// Whether admission under `a` is admission under `b`: same scopes, same limits.
export function sameLimits(a: AuthenticatedKey, b: AuthenticatedKey): boolean {
  const same = (x: AuthenticatedKey["limits"], y: AuthenticatedKey["limits"]) => x.rpm === y.rpm && x.tpm === y.tpm && x.concurrency === y.concurrency;
  return a.keyId === b.keyId && same(a.limits, b.limits) && same(a.keyLimits, b.keyLimits);
}

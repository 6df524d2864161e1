// Middleware: turns the presented API key into an account. Keys are accepted as
// `Authorization: Bearer sk-...` and as `x-api-key` (the Anthropic SDKs send the latter).
//
// Every request is checked against the key's current state, so a revoked key fails on the very
// next request. A key this isolate has not seen is looked up in D1 by hash; after that its
// account facts (which never change) are known here, and each request is checked by the
// account's ledger Durable Object, which holds the account's live keys (auth/live-keys.ts): a
// memory lookup, no D1 query.
//
// A known key's inference request (POST) does not wait for its check here: the pipeline checks
// the key in the same ledger call that admits the request and holds its money, and hands the
// verdict over (`KeyCheck.accept`). Whatever a route answered, a refused key gets a 401 instead:
// after the route the verdict is awaited, or, if no pipeline reached one, the check is made then.
//
// A bad key costs little (failed-auth.ts): an unknown key is remembered as unknown for a while,
// and an address past its budget of failed attempts gets a 429 before any lookup.
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { ledgerFor } from "../stubs";
import { authenticationFails } from "../errors/api-error";
import type { AppEnv, AuthenticatedKey } from "../env";
import { API_KEY_PATTERN, sha256Hex } from "./api-keys";
import { failedAuthentication, isKnownUnknown, refuseSpentAddress, rememberUnknown } from "./failed-auth";
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

// By key hash: a key's immutable facts, with the limits its last check read.
const knownKeys = new Map<string, AuthenticatedKey>();
// By key id: when this isolate last wrote (or read) the key's last_used_at.
const lastUsedAt = new Map<string, number>();

// The authoritative verdict on a request's key, decided once.
export interface KeyCheck {
  // The verdict, checking the key now if nothing has decided it yet; rejects with the 401.
  verify(): Promise<AuthenticatedKey>;
  // A verdict reached elsewhere (the ledger checked the key while admitting its request): the
  // key with its current limits, or null when it is refused (then this throws the 401).
  accept(live: AuthenticatedKey | null): AuthenticatedKey;
}

export const authenticate = createMiddleware<AppEnv>(async (c, next) => {
  const key = presentedKey(c.req.raw.headers);
  if (!key || !API_KEY_PATTERN.test(key)) throw authenticationFails(key);
  const keyHash = await sha256Hex(key);

  const known = knownKeys.get(keyHash);
  if (!known) {
    refuseSpentAddress(c);
    if (isKnownUnknown(keyHash)) throw await failedAuthentication(c, key);
  }
  const keyCheck = known ? knownKeyCheck(c, key, keyHash, known) : lookedUpKeyCheck(c, key, keyHash);
  c.set("keyCheck", keyCheck);

  if (!known || c.req.method !== "POST") {
    c.set("auth", await keyCheck.verify());
    await next();
    return;
  }
  c.set("auth", known);
  await next();
  await keyCheck.verify(); // refused: this throws, and the error handler answers 401
});

// A key seen before: checked by its account's ledger, here or within the pipeline's call.
function knownKeyCheck(c: Context<AppEnv>, key: string, keyHash: string, known: AuthenticatedKey): KeyCheck {
  let verdict: Promise<AuthenticatedKey> | null = null;
  const accept = (live: AuthenticatedKey | null): AuthenticatedKey => {
    if (!live) {
      knownKeys.delete(keyHash);
      const refused = authenticationFails(key);
      verdict ??= Promise.reject(refused);
      verdict.catch(() => undefined);
      throw refused;
    }
    knownKeys.set(keyHash, live);
    touchLastUsed(c, live.keyId, null);
    verdict ??= Promise.resolve(live);
    return live;
  };
  return {
    verify() {
      verdict ??= (async () => {
        const started = performance.now();
        const live = await ledgerFor(c.env, known.accountId).checkKey(known.accountId, known.keyId);
        c.get("timings").auth = performance.now() - started;
        return accept(live);
      })();
      return verdict;
    },
    accept,
  };
}

// A key not seen before: its D1 lookup decides; the ledger's later answer must agree.
function lookedUpKeyCheck(c: Context<AppEnv>, key: string, keyHash: string): KeyCheck {
  const lookup = lookUpKey(c, key, keyHash);
  lookup.catch(() => undefined); // awaited through verify(); never unhandled
  return {
    verify: () => lookup,
    accept(live) {
      if (!live) {
        knownKeys.delete(keyHash);
        throw authenticationFails(key);
      }
      return live;
    },
  };
}

// By hash in D1, not revoked, with its current limits.
async function lookUpKey(c: Context<AppEnv>, key: string, keyHash: string): Promise<AuthenticatedKey> {
  const started = performance.now();
  const row = await c.env.DB.prepare(`${SELECT_LIVE_KEYS} AND k.key_hash = ?`).bind(keyHash).first<LiveKeyRow>();
  c.get("timings").auth = performance.now() - started;
  if (!row) {
    knownKeys.delete(keyHash);
    rememberUnknown(keyHash);
    throw await failedAuthentication(c, key);
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

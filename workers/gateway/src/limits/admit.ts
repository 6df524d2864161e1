// rateLimit: admits a request against its account's limits and, when the key has limits of its
// own, the key's too. Refused: a 429 `Rate Limit Reached` with Retry-After. Admitted: the
// x-ratelimit-* headers for the response and `finish`, which frees the concurrency slot and
// reconciles tokens per minute with what the request really used.
//
// The account's limits live in the account's ledger (billing/account-ledger.ts): the inference
// pipeline admits and holds the request's money in one call (`reserve` with `admit`), and the
// ledger's settle or release finishes the account's lease. A key with limits of its own has a
// RateLimiter Durable Object (limits/rate-limiter.ts).
import { ledgerFor } from "../stubs";
import type { AuthenticatedKey, Env } from "../env";
import { rateLimited } from "../errors/api-error";
import { accountLimits, keyLimits, type Limits } from "./defaults";
import type { AdmitResult, LimiterState } from "./limiter-buckets";

export interface Admission {
  headers: Record<string, string>;
  finish(actualTokens: number): Promise<void>;
  // Undoes the admission (the key was refused or its limits changed): the request and its
  // tokens go back to the buckets and the concurrency slot is freed.
  cancel(): Promise<void>;
}

export function limiterFor(env: Env, scopeName: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(scopeName));
}

const accountAdmission = (auth: AuthenticatedKey, tokens: number) => ({ limits: accountLimits(auth.limits), tokens });

// The key's own limits, when it has any.
function keyScope(auth: AuthenticatedKey): { name: string; limits: Limits } | null {
  const limits = keyLimits(auth.keyLimits);
  return limits ? { name: `key:${auth.keyId}`, limits } : null;
}

// The key scope's answer; null when the key has no limits of its own.
export async function admitKey(env: Env, auth: AuthenticatedKey, requestId: string, tokens: number): Promise<AdmitResult | null> {
  const scope = keyScope(auth);
  return scope ? limiterFor(env, scope.name).admit({ requestId, limits: scope.limits, tokens }) : null;
}

// Undoes the key scope's admission (its request was refused elsewhere before `combine`).
async function cancelKey(env: Env, auth: AuthenticatedKey, requestId: string): Promise<void> {
  const scope = keyScope(auth);
  if (scope) await limiterFor(env, scope.name).cancel(requestId, scope.limits);
}

// Both scopes on their own, without a money hold (the limiter's tests use it; the inference
// pipeline admits the account's scope within the ledger's `reserve`). `finish` finishes both.
export async function admit(env: Env, auth: AuthenticatedKey, requestId: string, tokens: number): Promise<Admission> {
  const ledger = ledgerFor(env, auth.accountId);
  const [account, key] = await Promise.all([ledger.admit({ requestId, ...accountAdmission(auth, tokens) }), admitKey(env, auth, requestId, tokens)]);
  return combine(env, auth, requestId, account, key, { finishAccount: true });
}

// From the account scope's answer (given by the ledger) and the key scope's: the Admission, or a
// 429 once the scope that admitted has been undone. With `finishAccount` false, the account's
// lease is left for the ledger to finish (at settle or release).
export async function combine(
  env: Env,
  auth: AuthenticatedKey,
  requestId: string,
  account: AdmitResult,
  key: AdmitResult | null,
  { finishAccount }: { finishAccount: boolean },
): Promise<Admission> {
  const ledger = ledgerFor(env, auth.accountId);
  const scope = keyScope(auth);
  const results = key ? [account, key] : [account];
  const headers = rateLimitHeaders(results.map((r) => r.state));
  const cancelAccount = () => ledger.cancelAdmission(requestId);

  const refusals = results.flatMap((r) => (r.ok ? [] : [r.retryAfterMs]));
  if (refusals.length > 0) {
    await Promise.all([account.ok ? cancelAccount() : null, key?.ok ? cancelKey(env, auth, requestId) : null]);
    const retryAfterMs = Math.max(...refusals);
    throw rateLimited(Math.max(1, Math.ceil(retryAfterMs / 1000)), { ...headers, "retry-after-ms": String(retryAfterMs) });
  }

  let finished: Promise<void> | null = null;
  return {
    headers,
    finish(actualTokens: number) {
      finished ??= Promise.all([
        finishAccount ? ledger.finishAdmission(requestId, actualTokens) : null,
        scope ? limiterFor(env, scope.name).finish(requestId, actualTokens, scope.limits) : null,
      ])
        .then(() => undefined)
        .catch((err) => console.error(`request ${requestId}: releasing its rate-limit lease failed`, err));
      return finished;
    },
    cancel() {
      finished ??= Promise.all([cancelAccount(), cancelKey(env, auth, requestId)]).then(() => undefined);
      return finished;
    },
  };
}

// OpenAI-style headers; with two scopes, the one with less left is the one that binds.
export function rateLimitHeaders(states: LimiterState[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [dimension, pick] of [
    ["requests", (s: LimiterState) => s.requests],
    ["tokens", (s: LimiterState) => s.tokens],
  ] as const) {
    const buckets = states.map(pick).filter((b) => b !== null);
    if (buckets.length === 0) continue;
    const binding = buckets.reduce((a, b) => (b.remaining < a.remaining ? b : a));
    headers[`x-ratelimit-limit-${dimension}`] = String(binding.limit);
    headers[`x-ratelimit-remaining-${dimension}`] = String(binding.remaining);
    headers[`x-ratelimit-reset-${dimension}`] = formatDuration(binding.resetMs);
  }
  return headers;
}

// "250ms", "12s", "1m0s": the duration format of OpenAI's x-ratelimit-reset-* headers.
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const seconds = Math.ceil(ms / 1000);
  return seconds < 60 ? `${seconds}s` : `${Math.floor(seconds / 60)}m${seconds % 60}s`;
}

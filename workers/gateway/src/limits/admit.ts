// rateLimit: admits a request against its account's limits and, when the key has limits of its
// own, the key's too. Refused: a 429 `Rate Limit Reached` with Retry-After. Admitted: the
// x-ratelimit-* headers for the response and `finish`, which frees the concurrency slot and
// reconciles tokens per minute with what the request really used.
import type { AuthenticatedKey, Env } from "../env";
import { rateLimited } from "../errors/api-error";
import { accountLimits, keyLimits, type Limits } from "./defaults";
import type { LimiterState } from "./rate-limiter";

export interface Admission {
  headers: Record<string, string>;
  finish(actualTokens: number): Promise<void>;
  // Undoes the admission (the key was refused or its limits changed): the request and its
  // tokens go back to the buckets and the concurrency slot is freed.
  cancel(): Promise<void>;
}

interface Scope {
  name: string;
  limits: Limits;
}

export function limiterFor(env: Env, scopeName: string) {
  return env.LIMITER.get(env.LIMITER.idFromName(scopeName));
}

export function scopesOf(auth: AuthenticatedKey): Scope[] {
  const scopes: Scope[] = [{ name: `account:${auth.accountId}`, limits: accountLimits(auth.limits) }];
  const ownKeyLimits = keyLimits(auth.keyLimits);
  if (ownKeyLimits) scopes.push({ name: `key:${auth.keyId}`, limits: ownKeyLimits });
  return scopes;
}

export async function admit(env: Env, auth: AuthenticatedKey, requestId: string, estimatedTokens: number): Promise<Admission> {
  const scopes = scopesOf(auth);
  const results = await Promise.all(
    scopes.map((scope) => limiterFor(env, scope.name).admit({ requestId, limits: scope.limits, tokens: estimatedTokens })),
  );
  const headers = rateLimitHeaders(results.map((r) => r.state));

  const refusals = results.flatMap((r) => (r.ok ? [] : [r.retryAfterMs]));
  if (refusals.length > 0) {
    await Promise.all(scopes.map((scope, i) => (results[i]!.ok ? limiterFor(env, scope.name).cancel(requestId, scope.limits) : null)));
    const retryAfterMs = Math.max(...refusals);
    throw rateLimited(Math.max(1, Math.ceil(retryAfterMs / 1000)), { ...headers, "retry-after-ms": String(retryAfterMs) });
  }

  let finished: Promise<void> | null = null;
  return {
    headers,
    finish(actualTokens: number) {
      finished ??= Promise.all(scopes.map((scope) => limiterFor(env, scope.name).finish(requestId, actualTokens, scope.limits)))
        .then(() => undefined)
        .catch((err) => console.error(`request ${requestId}: releasing its rate-limit lease failed`, err));
      return finished;
    },
    cancel() {
      finished ??= Promise.all(scopes.map((scope) => limiterFor(env, scope.name).cancel(requestId, scope.limits))).then(() => undefined);
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

import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { AuthenticatedKey } from "../../../workers/gateway/src/env";
import { ApiError } from "../../../workers/gateway/src/errors/api-error";
import { admit, formatDuration, limiterFor, type Admission } from "../../../workers/gateway/src/limits/admit";
import { LEASE_TTL_MS, PLATFORM_DEFAULT_LIMITS, type Limits } from "../../../workers/gateway/src/limits/defaults";
import { gatewayEnv } from "../billing/ledger-helpers";
import { ledgerFor } from "../../../workers/gateway/src/stubs";
import type { LimiterBuckets } from "../../../workers/gateway/src/limits/limiter-buckets";

const none: Limits = { rpm: null, tpm: null, concurrency: null };

function authFor(limits: Partial<Limits> = {}, keyLimits: Partial<Limits> = {}): AuthenticatedKey {
  const id = crypto.randomUUID().slice(0, 8);
  return {
    keyId: `key_${id}`,
    accountId: `acct_${id}`,
    cacheNamespace: id,
    limits: { ...none, ...limits },
    keyLimits: { ...none, ...keyLimits },
  };
}

async function tryAdmit(auth: AuthenticatedKey, tokens = 100): Promise<Admission | ApiError> {
  try {
    return await admit(gatewayEnv, auth, crypto.randomUUID(), tokens);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
}

const admitted = (r: Admission | ApiError): r is Admission => !(r instanceof ApiError);

// Moves a limiter's clock: as if `ms` had passed since its last update (and leases aged too).
// An account's limits live in its ledger; a key's in its RateLimiter.
async function advance(scope: string, ms: number): Promise<void> {
  const [kind, id] = scope.split(":") as [string, string];
  const stub = kind === "account" ? ledgerFor(gatewayEnv, id) : limiterFor(gatewayEnv, scope);
  await runInDurableObject(stub as DurableObjectStub, async (instance) => {
    const { limiter } = instance as unknown as { limiter: LimiterBuckets };
    if (limiter.buckets) limiter.buckets.updatedAt -= ms;
    for (const lease of limiter.leases.values()) lease.expiresAt -= ms;
  });
}

describe("requests per minute", () => {
  it("holds under concurrency, answers 429 with Retry-After and headers, and recovers after the window", async () => {
    const auth = authFor({ rpm: 10 });
    const results = await Promise.all(Array.from({ length: 50 }, () => tryAdmit(auth)));
    const ok = results.filter(admitted);
    const refused = results.filter((r): r is ApiError => r instanceof ApiError);
    expect(ok).toHaveLength(10);
    expect(refused).toHaveLength(40);

    const err = refused[0]!;
    expect(err.status).toBe(429);
    expect(err.message).toBe("Rate Limit Reached");
    expect(err.toJSON().error.type).toBe("rate_limit_error");
    // One request comes back every 6 s at 10 per minute.
    expect(err.headers["retry-after"]).toBe("6");
    expect(Number(err.headers["retry-after-ms"])).toBeGreaterThan(5_000);
    expect(err.headers["x-ratelimit-limit-requests"]).toBe("10");
    expect(err.headers["x-ratelimit-remaining-requests"]).toBe("0");
    expect(err.headers["x-ratelimit-reset-requests"]).toBe("1m0s");

    const remaining = ok.map((a) => Number(a.headers["x-ratelimit-remaining-requests"])).sort((a, b) => a - b);
    expect(remaining).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    await Promise.all(ok.map((a) => a.finish(50)));

    await advance(`account:${auth.accountId}`, 6_000);
    expect(admitted(await tryAdmit(auth))).toBe(true);
    expect(admitted(await tryAdmit(auth))).toBe(false);

    await advance(`account:${auth.accountId}`, 60_000);
    const again = await Promise.all(Array.from({ length: 15 }, () => tryAdmit(auth)));
    expect(again.filter(admitted)).toHaveLength(10);
  });
});

describe("tokens per minute", () => {
  it("reserves the estimate at admission and gives back what was not used", async () => {
    const auth = authFor({ tpm: 10_000 });
    const results = await Promise.all(Array.from({ length: 20 }, () => tryAdmit(auth, 3_000)));
    const ok = results.filter(admitted);
    expect(ok).toHaveLength(3);
    const refusal = results.find((r): r is ApiError => r instanceof ApiError)!;
    expect(refusal.headers["x-ratelimit-limit-tokens"]).toBe("10000");
    // 1000 left (plus what refilled while the test ran: 167 tokens a second); 2000 more take 12 s.
    expect(Number(refusal.headers["x-ratelimit-remaining-tokens"])).toBeGreaterThanOrEqual(1000);
    expect(Number(refusal.headers["x-ratelimit-remaining-tokens"])).toBeLessThan(2000);
    expect(Number(refusal.headers["retry-after"])).toBeGreaterThanOrEqual(6);
    expect(Number(refusal.headers["retry-after"])).toBeLessThanOrEqual(12);

    // Each used 500 of its 3000: 7500 come back, 8500 in all, so two 4000-token requests fit
    // and a third would not for another 20 s.
    await Promise.all(ok.map((a) => a.finish(500)));
    const more = await Promise.all(Array.from({ length: 5 }, () => tryAdmit(auth, 4_000)));
    expect(more.filter(admitted)).toHaveLength(2);
    const left = more.filter(admitted).map((a) => Number(a.headers["x-ratelimit-remaining-tokens"])).sort((a, b) => a - b);
    expect(left[0]).toBeGreaterThanOrEqual(500);
    expect(left[0]).toBeLessThan(1500);
    expect(left[1]! - left[0]!).toBeGreaterThanOrEqual(3990); // floors of levels that refill between the two
  });

  it("lets a request larger than the whole minute through only when the bucket is full", async () => {
    const auth = authFor({ tpm: 1_000 });
    const big = await tryAdmit(auth, 5_000);
    expect(admitted(big)).toBe(true);
    expect(admitted(await tryAdmit(auth, 1))).toBe(false);
    await (big as Admission).finish(5_000);
    await advance(`account:${auth.accountId}`, 60_000);
    expect(admitted(await tryAdmit(auth, 1))).toBe(false); // still owes 3000 after a minute
    await advance(`account:${auth.accountId}`, 4 * 60_000);
    expect(admitted(await tryAdmit(auth, 5_000))).toBe(true);
  });
});

describe("concurrent requests", () => {
  it("holds leases until finish, and a lease that is never finished expires", async () => {
    const auth = authFor({ concurrency: 3 });
    const results = await Promise.all(Array.from({ length: 12 }, () => tryAdmit(auth)));
    const ok = results.filter(admitted);
    expect(ok).toHaveLength(3);
    expect((results.find((r) => r instanceof ApiError) as ApiError).headers["retry-after"]).toBe("1");

    await ok[0]!.finish(10);
    await ok[0]!.finish(10); // finishing twice frees one slot, not two
    const next = await Promise.all([tryAdmit(auth), tryAdmit(auth)]);
    expect(next.filter(admitted)).toHaveLength(1);

    // Nobody finishes the rest (a crashed gateway): after the lease time the slots are free.
    await advance(`account:${auth.accountId}`, LEASE_TTL_MS);
    const later = await Promise.all(Array.from({ length: 5 }, () => tryAdmit(auth)));
    expect(later.filter(admitted)).toHaveLength(3);
  });
});

describe("account and key scopes", () => {
  it("applies the key's own limits on top of the account's and undoes the account admission when the key refuses", async () => {
    const auth = authFor({ rpm: 100 }, { rpm: 2 });
    const results = await Promise.all(Array.from({ length: 10 }, () => tryAdmit(auth)));
    const ok = results.filter(admitted);
    expect(ok).toHaveLength(2);
    // The tighter scope's numbers are in the headers.
    expect(ok.map((a) => a.headers["x-ratelimit-limit-requests"])).toEqual(["2", "2"]);
    // Refused by the key, the account gave its requests back: only 2 of 100 are used.
    const otherKey: AuthenticatedKey = { ...auth, keyId: `${auth.keyId}-b`, keyLimits: none };
    const viaOther = await tryAdmit(otherKey);
    expect(admitted(viaOther) && viaOther.headers["x-ratelimit-remaining-requests"]).toBe("97");
  });

  it("uses the platform defaults when the account has none", async () => {
    const a = await tryAdmit(authFor());
    expect(admitted(a)).toBe(true);
    const headers = (a as Admission).headers;
    expect(headers["x-ratelimit-limit-requests"]).toBe(String(PLATFORM_DEFAULT_LIMITS.rpm));
    expect(headers["x-ratelimit-limit-tokens"]).toBe(String(PLATFORM_DEFAULT_LIMITS.tpm));
    expect(headers["x-ratelimit-remaining-requests"]).toBe(String(PLATFORM_DEFAULT_LIMITS.rpm - 1));
    expect(headers["x-ratelimit-remaining-tokens"]).toBe(String(PLATFORM_DEFAULT_LIMITS.tpm - 100));
  });
});

describe("formatDuration", () => {
  it("writes OpenAI's reset format", () => {
    expect(formatDuration(250)).toBe("250ms");
    expect(formatDuration(1000)).toBe("1s");
    expect(formatDuration(12_001)).toBe("13s");
    expect(formatDuration(60_000)).toBe("1m0s");
    expect(formatDuration(90_000)).toBe("1m30s");
  });
});

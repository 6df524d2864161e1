// One scope's rate limits in memory: token buckets for requests and tokens per minute (refilled
// continuously, full after one minute of rest) and expiring leases for concurrent requests.
// Tokens are taken at admission (the caller's estimate: prompt + every completion token it may
// emit) and reconciled when the request finishes. Hosted by a Durable Object (the account's
// ledger for the account scope, a RateLimiter for a key with limits of its own), which keeps a
// snapshot in storage for after an eviction (persistSnapshots).
import { LEASE_TTL_MS, type Limits } from "./defaults";

const WINDOW_MS = 60_000;
// Concurrency has no schedule to wait for; clients are told to come back shortly.
const CONCURRENCY_RETRY_MS = 1_000;

export interface BucketState {
  limit: number;
  remaining: number;
  // Until the bucket is full again.
  resetMs: number;
}

export interface LimiterState {
  requests: BucketState | null;
  tokens: BucketState | null;
  concurrency: { limit: number; inFlight: number } | null;
}

export interface AdmitRequest {
  requestId: string;
  limits: Limits;
  tokens: number;
}

export type AdmitResult = { ok: true; state: LimiterState } | { ok: false; retryAfterMs: number; state: LimiterState };

interface Levels {
  requests: number | null;
  tokens: number | null;
  updatedAt: number;
}

interface Lease {
  tokens: number;
  expiresAt: number;
  limits?: Limits; // as admitted (absent in snapshots written before it was kept)
}

export interface LimiterSnapshot {
  buckets: Levels | null;
  leases: [string, Lease][];
}

export class LimiterBuckets {
  // Null until first used, which reads as full buckets.
  buckets: Levels | null = null;
  readonly leases = new Map<string, Lease>();

  constructor(private readonly changed: () => void) {}

  restore(saved: LimiterSnapshot | undefined): void {
    if (!saved) return;
    this.buckets = saved.buckets;
    for (const [id, lease] of saved.leases) this.leases.set(id, lease);
  }

  snapshot(): LimiterSnapshot {
    return { buckets: this.buckets, leases: [...this.leases] };
  }

  admit({ requestId, limits, tokens }: AdmitRequest): AdmitResult {
    const now = Date.now();
    for (const [id, lease] of this.leases) if (lease.expiresAt <= now) this.leases.delete(id);
    const levels = this.refilled(limits, now);
    if (this.leases.has(requestId)) return { ok: true, state: this.state(limits, levels) };

    const waits: number[] = [];
    if (limits.concurrency !== null && this.leases.size >= limits.concurrency) waits.push(CONCURRENCY_RETRY_MS);
    if (limits.rpm !== null && levels.requests! < 1) waits.push(timeToReach(1, levels.requests!, limits.rpm));
    // A request larger than the whole bucket is let through when the bucket is full, then owes.
    const tokensNeeded = limits.tpm === null ? 0 : Math.min(tokens, limits.tpm);
    if (limits.tpm !== null && levels.tokens! < tokensNeeded) waits.push(timeToReach(tokensNeeded, levels.tokens!, limits.tpm));
    if (waits.length > 0) {
      this.save(levels);
      return { ok: false, retryAfterMs: Math.ceil(Math.max(...waits)), state: this.state(limits, levels) };
    }

    if (levels.requests !== null) levels.requests -= 1;
    if (levels.tokens !== null) levels.tokens -= tokens;
    this.leases.set(requestId, { tokens, expiresAt: now + LEASE_TTL_MS, limits });
    this.save(levels);
    return { ok: true, state: this.state(limits, levels) };
  }

  // The request is over: free its slot and give back the tokens it was estimated but did not use.
  finish(requestId: string, actualTokens: number, limits?: Limits): void {
    const lease = this.leases.get(requestId);
    const scope = limits ?? lease?.limits;
    if (!lease || !scope) return;
    const levels = this.refilled(scope, Date.now());
    if (levels.tokens !== null) levels.tokens = Math.min(scope.tpm!, levels.tokens + lease.tokens - actualTokens);
    this.leases.delete(requestId);
    this.save(levels);
  }

  // The request was admitted here but refused elsewhere (another scope's limit, its key): undo it all.
  cancel(requestId: string, limits?: Limits): void {
    const lease = this.leases.get(requestId);
    const scope = limits ?? lease?.limits;
    if (!lease || !scope) return;
    const levels = this.refilled(scope, Date.now());
    if (levels.requests !== null) levels.requests = Math.min(scope.rpm!, levels.requests + 1);
    if (levels.tokens !== null) levels.tokens = Math.min(scope.tpm!, levels.tokens + lease.tokens);
    this.leases.delete(requestId);
    this.save(levels);
  }

  // Bucket levels as of `now`; a limit that changed since clamps the level to the new size.
  private refilled(limits: Limits, now: number): Levels {
    const last = this.buckets;
    const elapsed = last ? Math.max(0, now - last.updatedAt) : 0;
    const refill = (level: number | null | undefined, limit: number | null) =>
      limit === null ? null : Math.min(limit, (level ?? limit) + (elapsed * limit) / WINDOW_MS);
    return { requests: refill(last?.requests, limits.rpm), tokens: refill(last?.tokens, limits.tpm), updatedAt: now };
  }

  private save(levels: Levels): void {
    this.buckets = levels;
    this.changed();
  }

  private state(limits: Limits, levels: Levels): LimiterState {
    const bucket = (limit: number | null, level: number | null): BucketState | null =>
      limit === null || level === null ? null : { limit, remaining: Math.max(0, Math.floor(level)), resetMs: Math.ceil(timeToReach(limit, level, limit)) };
    return {
      requests: bucket(limits.rpm, levels.requests),
      tokens: bucket(limits.tpm, levels.tokens),
      concurrency: limits.concurrency === null ? null : { limit: limits.concurrency, inFlight: this.leases.size },
    };
  }
}

// Milliseconds until a bucket of `limit` per minute at `level` holds `target`.
function timeToReach(target: number, level: number, limit: number): number {
  return level >= target ? 0 : ((target - level) * WINDOW_MS) / limit;
}

const SNAPSHOT_KEY = "limiter";
const SNAPSHOT_DELAY_MS = 100;

// Memory is the working copy; storage keeps a copy for after an eviction or restart. The copy
// is written without holding answers for its confirmation: limits are best effort across a
// crash (at worst a few requests more for a moment), and admission stays off the disk path.
// One write covers every change within SNAPSHOT_DELAY_MS: under load, one storage write per
// interval instead of two per request (admit and finish).
export function persistedLimiter(ctx: DurableObjectState): LimiterBuckets {
  let pending = false;
  const limiter: LimiterBuckets = new LimiterBuckets(() => {
    if (pending) return;
    pending = true;
    setTimeout(() => {
      pending = false;
      void ctx.storage.put(SNAPSHOT_KEY, limiter.snapshot(), { allowUnconfirmed: true });
    }, SNAPSHOT_DELAY_MS);
  });
  void ctx.blockConcurrencyWhile(async () => limiter.restore(await ctx.storage.get<LimiterSnapshot>(SNAPSHOT_KEY)));
  return limiter;
}

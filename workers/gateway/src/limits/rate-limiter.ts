// Rate limiter Durable Object, one per account and one per key that has limits of its own:
// token buckets for requests and tokens per minute (refilled continuously, full after one
// minute of rest) and expiring leases for concurrent requests. Tokens are taken at admission
// (the caller's estimate: prompt + every completion token it may emit) and reconciled when the
// request finishes. State lives in memory, with a copy in storage for after an eviction.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
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
}

interface Snapshot {
  buckets: { requests: number | null; tokens: number | null; updatedAt: number } | null;
  leases: [string, Lease][];
}

const SNAPSHOT_KEY = "limiter";
const SNAPSHOT_DELAY_MS = 100;

export class RateLimiter extends DurableObject<Env> {
  // Null until first used, which reads as full buckets.
  private buckets: Levels | null = null;
  private readonly leases = new Map<string, Lease>();
  private snapshotPending = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    void ctx.blockConcurrencyWhile(async () => {
      const saved = await ctx.storage.get<Snapshot>(SNAPSHOT_KEY);
      if (!saved) return;
      this.buckets = saved.buckets;
      for (const [id, lease] of saved.leases) this.leases.set(id, lease);
    });
  }

  async admit({ requestId, limits, tokens }: AdmitRequest): Promise<AdmitResult> {
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
    this.leases.set(requestId, { tokens, expiresAt: now + LEASE_TTL_MS });
    this.save(levels);
    return { ok: true, state: this.state(limits, levels) };
  }

  // The request is over: free its slot and give back the tokens it was estimated but did not use.
  async finish(requestId: string, actualTokens: number, limits: Limits): Promise<void> {
    const lease = this.leases.get(requestId);
    if (!lease) return;
    const levels = this.refilled(limits, Date.now());
    if (levels.tokens !== null) levels.tokens = Math.min(limits.tpm!, levels.tokens + lease.tokens - actualTokens);
    this.leases.delete(requestId);
    this.save(levels);
  }

  // The request was admitted here but refused elsewhere (another scope's limit): undo it all.
  async cancel(requestId: string, limits: Limits): Promise<void> {
    const lease = this.leases.get(requestId);
    if (!lease) return;
    const levels = this.refilled(limits, Date.now());
    if (levels.requests !== null) levels.requests = Math.min(limits.rpm!, levels.requests + 1);
    if (levels.tokens !== null) levels.tokens = Math.min(limits.tpm!, levels.tokens + lease.tokens);
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

  // Memory is the working copy; storage keeps a copy for after an eviction or restart. The copy
  // is written without holding the answer for its confirmation: limits are best effort across a
  // crash (at worst a few requests more for a moment), and admission stays off the disk path.
  // For the same reason one write covers every call within SNAPSHOT_DELAY_MS: under load that is
  // one storage write per interval instead of two per request (admit and finish).
  private save(levels: Levels): void {
    this.buckets = levels;
    if (this.snapshotPending) return;
    this.snapshotPending = true;
    setTimeout(() => {
      this.snapshotPending = false;
      const snapshot: Snapshot = { buckets: this.buckets, leases: [...this.leases] };
      void this.ctx.storage.put(SNAPSHOT_KEY, snapshot, { allowUnconfirmed: true });
    }, SNAPSHOT_DELAY_MS);
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

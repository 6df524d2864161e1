// Rate limiter Durable Object, one per account and one per key that has limits of its own:
// token buckets for requests and tokens per minute (refilled continuously, full after one
// minute of rest) and expiring leases for concurrent requests. Tokens are taken at admission
// (the caller's estimate: prompt + every completion token it may emit) and reconciled when the
// request finishes. State lives in the object's SQLite storage, so it survives eviction.
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

export class RateLimiter extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    // Levels are null until first used, which reads as a full bucket.
    this.sql.exec(`CREATE TABLE IF NOT EXISTS buckets (
      id INTEGER PRIMARY KEY CHECK (id = 1), requests REAL, tokens REAL, updated_at INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS leases (
      request_id TEXT PRIMARY KEY, tokens INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  }

  async admit({ requestId, limits, tokens }: AdmitRequest): Promise<AdmitResult> {
    const now = Date.now();
    this.sql.exec("DELETE FROM leases WHERE expires_at <= ?", now);
    const levels = this.refilled(limits, now);
    if (this.lease(requestId)) return { ok: true, state: this.state(limits, levels) };

    const waits: number[] = [];
    const inFlight = this.inFlight();
    if (limits.concurrency !== null && inFlight >= limits.concurrency) waits.push(CONCURRENCY_RETRY_MS);
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
    this.save(levels);
    this.sql.exec("INSERT INTO leases (request_id, tokens, expires_at) VALUES (?, ?, ?)", requestId, tokens, now + LEASE_TTL_MS);
    return { ok: true, state: this.state(limits, levels) };
  }

  // The request is over: free its slot and give back the tokens it was estimated but did not use.
  async finish(requestId: string, actualTokens: number, limits: Limits): Promise<void> {
    const lease = this.lease(requestId);
    if (!lease) return;
    const levels = this.refilled(limits, Date.now());
    if (levels.tokens !== null) levels.tokens = Math.min(limits.tpm!, levels.tokens + lease.tokens - actualTokens);
    this.save(levels);
    this.sql.exec("DELETE FROM leases WHERE request_id = ?", requestId);
  }

  // The request was admitted here but refused elsewhere (another scope's limit): undo it all.
  async cancel(requestId: string, limits: Limits): Promise<void> {
    const lease = this.lease(requestId);
    if (!lease) return;
    const levels = this.refilled(limits, Date.now());
    if (levels.requests !== null) levels.requests = Math.min(limits.rpm!, levels.requests + 1);
    if (levels.tokens !== null) levels.tokens = Math.min(limits.tpm!, levels.tokens + lease.tokens);
    this.save(levels);
    this.sql.exec("DELETE FROM leases WHERE request_id = ?", requestId);
  }

  private lease(requestId: string): { tokens: number } | undefined {
    return this.sql.exec<{ tokens: number }>("SELECT tokens FROM leases WHERE request_id = ?", requestId).toArray()[0];
  }

  private inFlight(): number {
    return this.sql.exec<{ n: number }>("SELECT COUNT(*) AS n FROM leases").one().n;
  }

  // Bucket levels as of `now`; a limit that changed since clamps the level to the new size.
  private refilled(limits: Limits, now: number): Levels {
    const row = this.sql.exec<{ requests: number | null; tokens: number | null; updated_at: number }>("SELECT * FROM buckets").toArray()[0];
    const elapsed = row ? Math.max(0, now - row.updated_at) : 0;
    const refill = (level: number | null | undefined, limit: number | null) =>
      limit === null ? null : Math.min(limit, (level ?? limit) + (elapsed * limit) / WINDOW_MS);
    return { requests: refill(row?.requests, limits.rpm), tokens: refill(row?.tokens, limits.tpm), updatedAt: now };
  }

  private save(levels: Levels): void {
    this.sql.exec(
      "INSERT OR REPLACE INTO buckets (id, requests, tokens, updated_at) VALUES (1, ?, ?, ?)",
      levels.requests,
      levels.tokens,
      levels.updatedAt,
    );
  }

  private state(limits: Limits, levels: Levels): LimiterState {
    const bucket = (limit: number | null, level: number | null): BucketState | null =>
      limit === null || level === null ? null : { limit, remaining: Math.max(0, Math.floor(level)), resetMs: Math.ceil(timeToReach(limit, level, limit)) };
    return {
      requests: bucket(limits.rpm, levels.requests),
      tokens: bucket(limits.tpm, levels.tokens),
      concurrency: limits.concurrency === null ? null : { limit: limits.concurrency, inFlight: this.inFlight() },
    };
  }
}

// Milliseconds until a bucket of `limit` per minute at `level` holds `target`.
function timeToReach(target: number, level: number, limit: number): number {
  return level >= target ? 0 : ((target - level) * WINDOW_MS) / limit;
}

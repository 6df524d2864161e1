// Rate limiter Durable Object for a key that has limits of its own (its account's limits live in
// the account's ledger, so that admission and the money hold are one call): the key's buckets
// and leases (limiter-buckets.ts) in memory, with a snapshot in storage.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import type { Limits } from "./defaults";
import { persistedLimiter, type AdmitRequest, type AdmitResult, type LimiterBuckets } from "./limiter-buckets";

export type { AdmitRequest, AdmitResult, BucketState, LimiterState } from "./limiter-buckets";

export class RateLimiter extends DurableObject<Env> {
  private readonly limiter: LimiterBuckets;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.limiter = persistedLimiter(ctx);
  }

  async admit(request: AdmitRequest): Promise<AdmitResult> {
    return this.limiter.admit(request);
  }

  async finish(requestId: string, actualTokens: number, limits: Limits): Promise<void> {
    this.limiter.finish(requestId, actualTokens, limits);
  }

  async cancel(requestId: string, limits: Limits): Promise<void> {
    this.limiter.cancel(requestId, limits);
  }
}

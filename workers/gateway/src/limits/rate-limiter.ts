// Rate limiter Durable Object (per account or key): token buckets for RPM/TPM and expiring
// leases for concurrency. Filled in by the limits work; declared here so bindings resolve.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";

export class RateLimiter extends DurableObject<Env> {}

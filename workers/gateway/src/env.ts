// Bindings of the gateway worker (wrangler.toml) and per-request context variables.
import type { KeyCheck } from "./auth/authenticate";
import type { AccountLedger } from "./billing/account-ledger";
import type { RateLimiter } from "./limits/rate-limiter";

export interface Env {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<AccountLedger>;
  LIMITER: DurableObjectNamespace<RateLimiter>;
  ASSETS?: Fetcher;
  ENVIRONMENT?: string;
  // HMAC secret of the payment provider's webhook (dashboard top-ups).
  PAYMENT_WEBHOOK_SECRET?: string;
}

export interface AuthenticatedKey {
  keyId: string;
  accountId: string;
  cacheNamespace: string;
  limits: { rpm: number | null; tpm: number | null; concurrency: number | null };
  keyLimits: { rpm: number | null; tpm: number | null; concurrency: number | null };
}

export interface Variables {
  traceId: string;
  // Server-Timing entries (name -> ms) of the pipeline's steps, reported on the response.
  timings: Record<string, number>;
  auth: AuthenticatedKey;
  // The authoritative key check; `auth` may be this isolate's earlier copy until it is decided
  // (see auth/authenticate.ts).
  keyCheck: KeyCheck;
}

export type AppEnv = { Bindings: Env; Variables: Variables };

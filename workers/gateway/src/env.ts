// Bindings of the gateway worker (wrangler.toml) and per-request context variables.
import type { KeyCheck } from "./auth/authenticate";
import type { AccountLedger } from "./billing/account-ledger";
import type { Settlement } from "./billing/settlement";
import type { RateLimiter } from "./limits/rate-limiter";
import type { SignInThrottle } from "./limits/sign-in-throttle";
import type { WorkerHealth } from "./upstream/worker-health";

export interface Env {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<AccountLedger>;
  LIMITER: DurableObjectNamespace<RateLimiter>;
  // Attempt counters: dashboard sign-ins, failed API authentications per client address.
  SIGNIN_THROTTLE?: DurableObjectNamespace<SignInThrottle>;
  WORKER_HEALTH: DurableObjectNamespace<WorkerHealth>;
  // Settlements the ledger could not take at once (billing/settlement-queue.ts).
  SETTLEMENTS: Queue<Settlement>;
  // The pipeline extends a request's hold this often while it runs (default 5 minutes); a hold
  // nothing is heard from lapses HOLD_TTL_MS after its last extension (default 60 minutes).
  HOLD_HEARTBEAT_MS?: string;
  HOLD_TTL_MS?: string;
  ASSETS?: Fetcher;
  // "development" allows http:// and IP-literal GPU worker URLs (upstream/worker-url.ts).
  ENVIRONMENT?: string;
  // Secret: base64 of 32 bytes; encrypts GPU worker secrets in D1 (upstream/worker-secret.ts).
  WORKER_SECRET_KEY?: string;
  // How long a GPU worker may take to send response headers (default 10 s).
  UPSTREAM_CONNECT_TIMEOUT_MS?: string;
  // Browser origins allowed to call the API, comma-separated, or "*" (middleware/cors.ts).
  CORS_ORIGINS?: string;
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

// Local development (`npm start`, tests): http:// and IP-literal GPU workers, sign-up without Turnstile.
export const isDevelopment = (env: Pick<Env, "ENVIRONMENT">) => env.ENVIRONMENT === "development";

// A whole-number setting (a var of wrangler.toml): unset is its default. Anything else that is
// not an integer of at least `min` is a misconfiguration: thrown, naming the variable, so the
// request fails with a 500 that the error handler logs instead of a NaN silently breaking a
// timer or a hold.
export function intSetting(env: object, name: string, fallback: number, min = 1): number {
  const raw = (env as Record<string, unknown>)[name];
  if (raw === undefined) return fallback;
  const text = String(raw).trim();
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) throw new Error(`${name} must be an integer of at least ${min}, not ${JSON.stringify(raw)}`);
  return value;
}

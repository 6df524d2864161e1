// Worker entry: the Hono app plus the Durable Object classes wrangler.toml declares.
import { buildApp } from "./app";

export { AccountLedger } from "./billing/account-ledger";
export { SignInThrottle } from "./dashboard/sign-in-throttle";
export { RateLimiter } from "./limits/rate-limiter";
export { WorkerHealth } from "./upstream/worker-health";

export default buildApp();

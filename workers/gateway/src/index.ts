// Worker entry: the Hono app, the cron trigger's work, the settlement queues' consumer and the
// Durable Object classes wrangler.toml declares.
import { buildApp } from "./app";
import type { Settlement } from "./billing/settlement";
import { settlementQueueConsumer } from "./billing/settlement-queue";
import type { Env } from "./env";
import { runUsageRetention } from "./usage-archive/archive";

export { AccountLedger } from "./billing/account-ledger";
export { SignInThrottle } from "./limits/sign-in-throttle";
export { RateLimiter } from "./limits/rate-limiter";
export { WorkerHealth } from "./upstream/worker-health";

const app = buildApp();

export default {
  fetch: app.fetch,
  // wrangler.toml [triggers]: per-request usage past its retention window moves to R2.
  async scheduled(_controller, env) {
    await runUsageRetention(env);
  },
  // wrangler.toml [[queues.consumers]]: settlements (and their dead letters).
  queue: settlementQueueConsumer,
} satisfies ExportedHandler<Env, Settlement>;

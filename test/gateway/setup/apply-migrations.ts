import { applyD1Migrations, env } from "cloudflare:test";
import type { Env as GatewayEnv } from "../../../workers/gateway/src/env";

// `env` in tests is typed as Cloudflare.Env: make it the gateway's bindings plus the migrations.
declare global {
  namespace Cloudflare {
    interface Env extends GatewayEnv {
      TEST_MIGRATIONS: { name: string; queries: string[] }[];
    }
  }
}

await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

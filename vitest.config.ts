// Gateway tests run inside workerd (the Workers Vitest pool) with real D1 and Durable Objects,
// configured from wrangler.toml; migrations are applied before every test file.
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  const migrations = await readD1Migrations("./migrations");
  return {
    plugins: [
      cloudflareTest({
        main: "./workers/gateway/src/index.ts",
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          // Short waits so keep-alive and first-byte timeouts, and holds lapsing without their
          // heartbeat (HOLD_*), are testable in seconds.
          // A fixed worker-secret key (base64 of 32 bytes), and a connect timeout short enough to test.
          bindings: {
            TEST_MIGRATIONS: migrations,
            KEEPALIVE_INTERVAL_MS: "300",
            FIRST_BYTE_TIMEOUT_MS: "4000",
            UPSTREAM_CONNECT_TIMEOUT_MS: "3000",
            WORKER_SECRET_KEY: "dGVzdC13b3JrZXItc2VjcmV0LWtleS0zMi1ieXRlcyE=",
            HOLD_TTL_MS: "5000",
            HOLD_HEARTBEAT_MS: "500",
          },
        },
      }),
    ],
    test: {
      include: ["test/gateway/**/*.test.ts"],
      setupFiles: ["./test/gateway/setup/apply-migrations.ts"],
      globalSetup: ["./test/gateway/setup/global-fake-upstream.ts"],
      testTimeout: 30_000,
    },
  };
});

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
        miniflare: { bindings: { TEST_MIGRATIONS: migrations } },
      }),
    ],
    test: {
      include: ["test/gateway/**/*.test.ts"],
      setupFiles: ["./test/gateway/setup/apply-migrations.ts"],
      testTimeout: 30_000,
    },
  };
});

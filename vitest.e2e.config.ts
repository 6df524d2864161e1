// End-to-end tests: plain Node (not workerd) drives the real platform — GPU workers on CPU with
// the embedded checkpoint and the gateway under `wrangler dev` — started once for the whole
// suite by test/e2e/setup/global-platform.ts, through the official OpenAI SDKs (Node and Python).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.test.ts"],
    globalSetup: ["./test/e2e/setup/global-platform.ts"],
    testTimeout: 180_000,
    hookTimeout: 300_000,
    fileParallelism: false,
  },
});

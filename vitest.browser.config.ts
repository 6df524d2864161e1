// Browser tests of the dashboard: plain Node (not workerd) drives a real `wrangler dev` gateway
// and Debian's headless Chromium through playwright-core.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/browser/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    fileParallelism: false,
  },
});

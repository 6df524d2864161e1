// Node-side tests of the operator tooling (the admin CLI against a throwaway local D1).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { include: ["test/cli/**/*.test.ts"], testTimeout: 120_000, fileParallelism: false },
});

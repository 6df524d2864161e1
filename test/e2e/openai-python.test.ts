// Runs the Python SDK tests (test/e2e/python, pytest in gpu-worker/.venv) against this suite's
// platform, with a fresh account's key.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { expect, it } from "vitest";
import { platform, signUp } from "./support";

const root = join(import.meta.dirname, "..", "..");

it("the official openai Python SDK passes test/e2e/python", async () => {
  const { key } = await signUp();
  const run = spawnSync(join(root, "gpu-worker", ".venv", "bin", "python"), ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", join(root, "test", "e2e", "python"), join(root, "test", "e2e", "python")], {
    cwd: root,
    env: { ...process.env, E2E_BASE_URL: platform().baseURL, E2E_API_KEY: key },
    encoding: "utf8",
    timeout: 170_000,
  });
  console.log(run.status === 0 ? run.stdout.trim().split("\n").pop() : `${run.stdout}\n${run.stderr}`);
  expect(run.stdout).toMatch(/\d+ passed/);
  expect(run.status).toBe(0);
});

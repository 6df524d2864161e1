// `npm start` with CHECKPOINT_DIR: a Hugging Face DeepSeek-V3 checkpoint of one's own replaces
// the embedded model. The checkpoint here is written like the embedded one but from another
// seed, so its weights differ: the platform must answer with that model's greedy tokens, not
// the embedded model's (the suite's platform, started by the global setup, serves those).
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import OpenAI from "openai";
import { afterAll, expect, it } from "vitest";
// @ts-expect-error plain ESM module without types
import { freePort } from "../../scripts/lib/platform.mjs";
import { alive, descendants, launchNpmStart } from "./launcher";
import { platform } from "./support";

const root = join(import.meta.dirname, "..", "..");
const workerDir = join(root, "gpu-worker");
let dir: string | undefined;
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Greedy, so that the same model gives the same tokens every time.
async function greedyAnswer(baseURL: string, apiKey: string): Promise<string> {
  const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey });
  const answer = await client.chat.completions.create({
    model: "deepseek-chat",
    messages: [{ role: "user", content: "Name three colours." }],
    max_tokens: 12,
    temperature: 0,
  });
  return answer.choices[0]!.message.content ?? "";
}

it("npm start with CHECKPOINT_DIR serves that checkpoint instead of the embedded model", async () => {
  dir = mkdtempSync(join(tmpdir(), "e2e-checkpoint-"));
  const checkpoint = join(dir, "my-checkpoint");
  await promisify(execFile)(join(workerDir, ".venv", "bin", "python"), ["-m", "gpu_worker.model.make_checkpoint", "--out", checkpoint, "--seed", "1"], { cwd: workerDir });
  expect(existsSync(join(checkpoint, "config.json"))).toBe(true);

  const port = await freePort();
  const launch = launchNpmStart({ PORT: String(port), CHECKPOINT_DIR: checkpoint, PERSIST_TO: join(dir, "state"), DATA_DIR: dir, FROZEN_GATEWAY: "1" });
  try {
    await launch.running();
    expect(launch.output()).toContain(`(checkpoint ${checkpoint})`);
    const key = launch.banner("API key");
    const mine = await greedyAnswer(`http://127.0.0.1:${port}`, key);
    expect(mine.length).toBeGreaterThan(0);
    expect(await greedyAnswer(`http://127.0.0.1:${port}`, key)).toBe(mine);
    const embedded = await greedyAnswer(platform().baseURL, platform().key);
    expect(mine).not.toBe(embedded);

    const children = descendants(launch.pid);
    expect(await launch.interrupt()).toBe(0);
    await expect.poll(() => children.filter(alive), { timeout: 10_000 }).toEqual([]);
  } finally {
    launch.kill();
  }
});

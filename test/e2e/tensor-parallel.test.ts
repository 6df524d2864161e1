// Tensor and expert parallelism through the gateway: GPU workers started with
// `--tensor-parallel-size 2` (two gloo ranks on CPU), with and without `--enable-expert-parallel`,
// registered with the operator CLI on the suite's gateway, answer greedy chat requests with the
// same tokens as the single-process worker on a checkpoint in DeepSeek's FP8 layout, and with
// transformers' greedy tokens on the same weights in float32.
// Tokens are compared as the logprobs' per-token bytes (one entry per generated token), so two
// sequences that only decode to the same text do not pass for equal.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error plain ESM module without types
import { admin, MODELS, startGpuWorker } from "../../scripts/lib/platform.mjs";
import { openai, platform, query, requestIdOf, usageRows } from "./support";

const root = join(import.meta.dirname, "..", "..");
const workerDir = join(root, "gpu-worker");
const python = join(workerDir, ".venv", "bin", "python");
const PROMPTS = ["Name three colours.", "Write one line about rivers."];
const MAX_TOKENS = 12;

interface Reference {
  prompt_tokens: number;
  token_ids: number[];
  token_bytes: number[][];
  text: string;
}
interface Answer {
  requestId: string;
  promptTokens: number;
  tokenBytes: number[][];
  text: string;
}

// worker id -> checkpoint kind and the parallelism flags it is served with
const SERVED = {
  "e2e-tp-fp8-single": { checkpoint: "fp8", flags: [] },
  "e2e-tp-fp8-tp2": { checkpoint: "fp8", flags: ["--tensor-parallel-size", "2"] },
  "e2e-tp-fp8-tp2-ep": { checkpoint: "fp8", flags: ["--tensor-parallel-size", "2", "--enable-expert-parallel"] },
  "e2e-tp-float32-tp2": { checkpoint: "float32", flags: ["--tensor-parallel-size", "2"] },
} as const;
type WorkerId = keyof typeof SERVED;

let dir: string;
let transformers: Reference[];
let enabledBefore: string[] = [];
const started = new Map<WorkerId, { url: string; secret: string; stop(): Promise<void> }>();
const persistTo = () => platform().persistTo;
const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "e2e-tensor-parallel-"));
  const { stdout } = await promisify(execFile)(python, [join(root, "test", "e2e", "python", "tensor_parallel_models.py"), dir, String(MAX_TOKENS), ...PROMPTS], {
    cwd: workerDir,
    env: { ...process.env, PYTHONPATH: workerDir },
    maxBuffer: 16 * 2 ** 20,
  });
  const made = JSON.parse(stdout.trim().split("\n").pop()!) as { fp8: string; float32: string; transformers: Reference[] };
  transformers = made.transformers;

  enabledBefore = (await query<{ id: string }>("SELECT id FROM gpu_workers WHERE enabled = 1")).map((r) => r.id);
  await Promise.all(
    Object.entries(SERVED).map(async ([id, how]) => {
      const worker = await startGpuWorker({
        python,
        checkpoint: made[how.checkpoint],
        threads: 1,
        numCacheBlocks: 64,
        extraArgs: ["--max-model-len", "1024", "--log-level", "warning", ...how.flags],
        output: join(dir, `${id}.log`),
      });
      started.set(id as WorkerId, worker);
    }),
  );
  for (const [id, worker] of started) await admin(["add-worker", "--id", id, "--url", worker.url, "--secret", worker.secret, "--models", MODELS], { persistTo: persistTo() });
});

afterAll(async () => {
  // The suite's own workers serve again, as before this file.
  const restore = enabledBefore.length ? `; UPDATE gpu_workers SET enabled = 1 WHERE id IN (${enabledBefore.map(quote).join(", ")})` : "";
  await query(`DELETE FROM gpu_workers WHERE id LIKE 'e2e-tp-%'${restore}`).catch((err) => console.error(err));
  await Promise.all([...started.values()].map((w) => w.stop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Only this worker is enabled: the gateway has nowhere else to send the request. The gateway's
// isolate rereads the registry every 2 s.
async function serveOnly(id: WorkerId) {
  await query(`UPDATE gpu_workers SET enabled = CASE WHEN id = ${quote(id)} THEN 1 ELSE 0 END`);
  await new Promise((r) => setTimeout(r, 2_500));
}

async function greedyThroughGateway(id: WorkerId): Promise<Answer[]> {
  await serveOnly(id);
  const client = openai(platform().key);
  const answers: Answer[] = [];
  for (const prompt of PROMPTS) {
    const { data, requestId } = await requestIdOf(
      client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: prompt }], max_tokens: MAX_TOKENS, temperature: 0, logprobs: true }),
    );
    const choice = data.choices[0]!;
    answers.push({ requestId, promptTokens: data.usage!.prompt_tokens, tokenBytes: choice.logprobs!.content!.map((t) => t.bytes!), text: choice.message.content ?? "" });
  }
  // The gateway's own record says which worker served each request.
  const rows = await usageRows(answers.map((a) => a.requestId));
  expect(rows.map((r) => r.worker_id)).toEqual(answers.map(() => id));
  console.log(`[tensor-parallel] ${id}: ${answers.map((a) => JSON.stringify(a.text)).join(" | ")}`);
  return answers;
}

async function ranksOf(id: WorkerId): Promise<number> {
  const worker = started.get(id)!;
  const health = (await (await fetch(`${worker.url}/health`, { headers: { authorization: `Bearer ${worker.secret}` } })).json()) as { ranks?: unknown[] };
  return health.ranks?.length ?? 1;
}

describe("an FP8 checkpoint in DeepSeek's layout", () => {
  let single: Answer[];

  beforeAll(async () => {
    single = await greedyThroughGateway("e2e-tp-fp8-single");
    for (const answer of single) expect(answer.tokenBytes).toHaveLength(MAX_TOKENS);
  });

  it.each(["e2e-tp-fp8-tp2", "e2e-tp-fp8-tp2-ep"] as const)("%s answers with the single-process worker's greedy tokens", async (id) => {
    expect(await ranksOf(id)).toBe(2);
    const answers = await greedyThroughGateway(id);
    expect(answers.map((a) => a.tokenBytes)).toEqual(single.map((a) => a.tokenBytes));
    expect(answers.map((a) => a.text)).toEqual(single.map((a) => a.text));
  });
});

it("a float32 checkpoint served with tensor parallelism gives transformers' greedy tokens", async () => {
  expect(await ranksOf("e2e-tp-float32-tp2")).toBe(2);
  const answers = await greedyThroughGateway("e2e-tp-float32-tp2");
  for (const reference of transformers) expect(reference.token_ids).toHaveLength(MAX_TOKENS);
  expect(answers.map((a) => a.promptTokens)).toEqual(transformers.map((r) => r.prompt_tokens));
  expect(answers.map((a) => a.tokenBytes)).toEqual(transformers.map((r) => r.token_bytes));
  expect(answers.map((a) => a.text)).toEqual(transformers.map((r) => r.text));
});

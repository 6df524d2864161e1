// `node scripts/bench-ab.mjs <other checkout>`: this checkout's gateway (B) against another
// checkout's (A, e.g. `git worktree add /tmp/base HEAD~1`), both running at once in front of
// one fake worker, requests alternating between them. On a shared, busy machine two separate
// `npm run bench` runs see different loads; paired, interleaved samples see the same one.
//
// Latency: BENCH_REQUESTS (400) sequential requests per gateway, order alternating; added =
// gateway minus a direct request next to it. Rate: BENCH_ROUNDS (4) rounds, each a closed loop
// of BENCH_STEP_MS (1500) per gateway at each of BENCH_CONCURRENCY (1,4,16); median per step.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "./ensure-deps.mjs";
import { closeClient, completeAnswer, post } from "./bench/http-client.mjs";

const other = process.argv[2];
if (!other) throw new Error("usage: node scripts/bench-ab.mjs <path of the other checkout>");
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 400);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 4);
const STEP_MS = Number(process.env.BENCH_STEP_MS ?? 1500);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? "1,4,16").split(",").map(Number);

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
};
const median = (xs) => pct(xs, 50);

async function main() {
  const secret = randomBytes(16).toString("hex");
  const child = spawn(process.execPath, [join(repoRoot, "scripts", "bench", "fake-worker.mjs"), secret], { stdio: ["ignore", "pipe", "inherit"] });
  const upstream = JSON.parse(String((await once(child.stdout, "data"))[0])).url;
  const closers = [() => child.kill("SIGTERM")];
  try {
    const gateways = [];
    for (const [name, root, port] of [["A", resolve(other), 8811], ["B", repoRoot, 8813]]) {
      const { startGateway } = await import(pathToFileURL(join(root, "scripts", "bench", "gateway.mjs")).href);
      const g = await startGateway({ runtime: "miniflare", port, workerUrl: upstream, workerSecret: secret });
      closers.push(g.close);
      gateways.push({ name, url: `${g.url}/v1/chat/completions`, headers: { authorization: `Bearer ${g.key}` } });
    }
    const body = (i) => ({ model: "deepseek-chat", messages: [{ role: "user", content: `Benchmark request ${i}: say hello.` }], max_tokens: 64, stream: true });
    const direct = { url: `${upstream}/v1/chat/completions`, headers: { authorization: `Bearer ${secret}` } };
    const directBody = (i) => ({ ...body(i), stream_options: { include_usage: true, continuous_usage_stats: true } });
    const send = async (path, i, b = body) => {
      const r = await post(path.url, path.headers, b(i));
      if (!completeAnswer(r)) throw new Error(`${path.name ?? "direct"}: ${r.status} ${r.text.slice(0, 200)}`);
      return r.ms;
    };

    for (let i = 0; i < 50; i++) for (const g of gateways) await send(g, i);
    const added = { A: [], B: [] };
    for (let i = 0; i < REQUESTS; i++) {
      for (const g of i % 2 ? [...gateways].reverse() : gateways) {
        const d = await send(direct, i, directBody);
        added[g.name].push((await send(g, 100 + i)) - d);
      }
    }
    console.log(`added latency over direct, ${REQUESTS} paired sequential requests each:`);
    for (const g of gateways) console.log(`  ${g.name}: p50 ${pct(added[g.name], 50).toFixed(2)} ms, p99 ${pct(added[g.name], 99).toFixed(2)} ms`);

    const rates = {};
    let offset = 1_000_000;
    for (let round = 0; round < ROUNDS; round++) {
      for (const c of CONCURRENCY) {
        for (const g of round % 2 ? [...gateways].reverse() : gateways) {
          let ok = 0;
          let errors = 0;
          const deadline = performance.now() + STEP_MS;
          await Promise.all(
            Array.from({ length: c }, async () => {
              while (performance.now() < deadline) await send(g, offset++).then(() => ok++, () => errors++);
            }),
          );
          ((rates[`${g.name} c${c}`] ??= [])).push(errors ? 0 : (ok * 1000) / STEP_MS);
        }
      }
    }
    console.log(`request rate (req/s, median of ${ROUNDS} alternating rounds, 0 = errors):`);
    for (const c of CONCURRENCY) console.log(`  concurrency ${c}: ${gateways.map((g) => `${g.name} ${median(rates[`${g.name} c${c}`]).toFixed(0)}`).join(", ")}`);
  } finally {
    closeClient();
    for (const close of closers.reverse()) await close();
  }
}

main().catch((err) => {
  console.error(err.stack ?? err);
  process.exit(1);
});

// `npm run bench`: what the gateway adds to a request, and the request rate it holds, side by
// side with the same requests sent straight to the upstream and through Portkey's open-source
// gateway (@portkey-ai/gateway) in front of the same upstream, all in one run.
//
// The upstream is a fake GPU worker (its own process) that answers a streamed chat request at
// once. Our gateway runs with local D1, the key and ledger Durable Objects in the path
// (key check, validation, prompt count, limits, reserve, forward, settle); Portkey does none of that.
//
// 1. Latency: the same requests, sequential, in blocks of 10 per path with the paths' blocks in
//    rotating order; added = path minus the direct request at the same position of its block
//    (paired), p50 and p99.
// 2. Rate: for each path a closed loop at rising concurrency (fixed duration per step); the
//    highest rate with no errors. All processes share this machine's CPUs, so this measures
//    what each path costs per request as much as how it scales.
//
// Environment: BENCH_REQUESTS (300 per path, latency phase), BENCH_STEP_MS (2000, per
// concurrency step), BENCH_MAX_CONCURRENCY (64), BENCH_RUNTIME (miniflare | wrangler, see
// scripts/bench/gateway.mjs), BENCH_PORTKEY=0 skips Portkey, BENCH_JSON=1 also prints JSON.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { join } from "node:path";
import { repoRoot } from "./ensure-deps.mjs";
import { startGateway } from "./bench/gateway.mjs";
import { closeClient, completeAnswer, post } from "./bench/http-client.mjs";
import { startPortkey } from "./bench/portkey.mjs";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const STEP_MS = Number(process.env.BENCH_STEP_MS ?? 2000);
const MAX_CONCURRENCY = Number(process.env.BENCH_MAX_CONCURRENCY ?? 64);
const RUNTIME = process.env.BENCH_RUNTIME ?? "miniflare";
const GATEWAY_PORT = Number(process.env.BENCH_PORT ?? 8799);
const PORTKEY_PORT = GATEWAY_PORT + 1;
const WARMUP = 50;
const LATENCY_BLOCK = 10;
const log = (text) => console.log(`[bench] ${text}`);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const stats = (samples) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
};

async function startUpstream(secret) {
  const child = spawn(process.execPath, [join(repoRoot, "scripts", "bench", "fake-worker.mjs"), secret], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = await once(child.stdout, "data");
  return { url: JSON.parse(String(line)).url, close: () => child.kill("SIGTERM") };
}

// The gateway's own Server-Timing steps (auth, prompt, admit_reserve, first_event), per request.
const serverTimings = {};
function recordServerTiming(header) {
  for (const entry of header.split(",")) {
    const match = /^\s*([\w-]+);dur=([\d.]+)/.exec(entry);
    if (match) (serverTimings[match[1]] ??= []).push(Number(match[2]));
  }
}

// Sends request i on a path; throws unless a complete streamed answer came back.
async function send(path, i) {
  const r = await post(path.url, path.headers, path.body(i));
  if (!completeAnswer(r)) throw new Error(`${path.name}: ${r.status} ${r.text.slice(0, 300)}`);
  if (path.name === "gateway") recordServerTiming(r.serverTiming);
  return r.ms;
}

// Closed loop: `concurrency` clients send back to back for STEP_MS; requests per second and errors.
async function closedLoop(path, concurrency, offset) {
  let next = 0;
  let ok = 0;
  let errors = 0;
  const latencies = [];
  const deadline = performance.now() + STEP_MS;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        try {
          latencies.push(await send(path, offset + next++));
          ok++;
        } catch {
          errors++;
        }
      }
    }),
  );
  return { concurrency, rate: (ok * 1000) / STEP_MS, errors, p50: stats(latencies).p50 };
}

// Rising concurrency until errors appear or the rate stops growing; the best error-free step.
async function maxRate(path) {
  let best = null;
  let single = null; // the concurrency-1 step: latency of requests sent back to back
  for (let concurrency = 1, offset = 1_000_000; concurrency <= MAX_CONCURRENCY; concurrency *= 2, offset += 1_000_000) {
    const step = await closedLoop(path, concurrency, offset);
    single ??= step;
    log(`  ${path.name.padEnd(8)} concurrency ${String(concurrency).padStart(3)}: ${step.rate.toFixed(0).padStart(5)} req/s, ${step.errors} errors, p50 ${step.p50?.toFixed(1)} ms`);
    if (step.errors > 0) break;
    if (!best || step.rate > best.rate) best = step;
    else if (step.rate < best.rate * 1.05) break; // saturated
  }
  return best && { ...best, single };
}

async function main() {
  const secret = randomBytes(16).toString("hex");
  const closers = [];
  process.on("SIGINT", async () => {
    for (const close of closers.reverse()) await close();
    process.exit(130);
  });
  try {
    const upstream = await startUpstream(secret);
    closers.push(upstream.close);
    log(`fake worker at ${upstream.url}; starting the gateway (${RUNTIME}) with local D1 and Durable Objects`);
    const gateway = await startGateway({ runtime: RUNTIME, port: GATEWAY_PORT, workerUrl: upstream.url, workerSecret: secret });
    closers.push(gateway.close);
    const portkey = process.env.BENCH_PORTKEY === "0" ? null : await startPortkey({ port: PORTKEY_PORT, workerUrl: upstream.url });
    if (portkey) closers.push(portkey.close);

    const clientBody = (i) => ({
      model: "deepseek-chat",
      messages: [{ role: "user", content: `Benchmark request ${i}: say hello.` }],
      max_tokens: 64,
      stream: true,
    });
    // What our gateway sends the worker: the same request with continuous usage. Direct and
    // Portkey send it too, so the upstream does the same work on every path.
    const upstreamBody = (i) => ({ ...clientBody(i), stream_options: { include_usage: true, continuous_usage_stats: true } });
    const paths = [
      { name: "direct", url: `${upstream.url}/v1/chat/completions`, headers: { authorization: `Bearer ${secret}` }, body: upstreamBody },
      ...(portkey ? [{ name: "portkey", url: `${portkey.url}/v1/chat/completions`, headers: { authorization: `Bearer ${secret}`, ...portkey.headers }, body: upstreamBody }] : []),
      { name: "gateway", url: `${gateway.url}/v1/chat/completions`, headers: { authorization: `Bearer ${gateway.key}` }, body: clientBody },
    ];

    log(`warming up (${WARMUP} requests per path)`);
    for (let i = 0; i < WARMUP; i++) for (const path of paths) await send(path, i);
    for (const k of Object.keys(serverTimings)) delete serverTimings[k];

    // Latency: sequential requests in blocks of LATENCY_BLOCK per path, the paths' blocks in
    // rotating order; the first request of each block is not counted. Interleaving single
    // requests instead would start most gateway requests after a Portkey request (~30 ms of
    // idle), and on a VM waking idle processes after such a gap costs each hop of a multi-hop
    // path ~1 ms more: that measured the machine's idle-wake cost, not the path's work.
    log(`latency: ${REQUESTS} sequential requests per path, in blocks of ${LATENCY_BLOCK} per path (rotating), paired by position with direct`);
    const samples = Object.fromEntries(paths.map((p) => [p.name, []]));
    const added = Object.fromEntries(paths.map((p) => [p.name, []]));
    for (let block = 0; block * LATENCY_BLOCK < REQUESTS; block++) {
      const order = paths.map((_, k) => paths[(block + k) % paths.length]);
      const ms = {};
      for (const path of order) {
        await send(path, WARMUP + block * (LATENCY_BLOCK + 1)); // the block's first: not counted
        ms[path.name] = [];
        for (let j = 1; j <= LATENCY_BLOCK; j++) ms[path.name].push(await send(path, WARMUP + block * (LATENCY_BLOCK + 1) + j));
      }
      for (const path of paths) {
        samples[path.name].push(...ms[path.name]);
        added[path.name].push(...ms[path.name].map((v, j) => v - ms.direct[j]));
      }
    }

    log(`rate: closed loop per path, concurrency 1, 2, 4, ... up to ${MAX_CONCURRENCY}, ${STEP_MS} ms per step`);
    const rates = {};
    for (const path of paths) rates[path.name] = await maxRate(path);

    const report = Object.fromEntries(
      paths.map((p) => [p.name, { latency: stats(samples[p.name]), added: stats(added[p.name]), maxRate: rates[p.name] }]),
    );
    const num = (v, digits = 2) => (v === undefined || v === null ? "-" : v.toFixed(digits));
    const ratio = (a, b) => (a && b ? `${(a / b).toFixed(2)}x` : "-");
    const col = (text, width = 11) => String(text).padStart(width);
    console.log(`\nStreamed chat request (64 max_tokens, 16 tokens answered at once by a fake worker), runtime: ${RUNTIME}`);
    console.log("gateway = validate + prompt count + key check, account limits and money hold (one ledger DO call) + forward + settle\n");
    console.log(`${"path".padEnd(10)}${col("p50 ms")}${col("p99 ms")}${col("added p50")}${col("added p99")}${col("max req/s")}${col("at conc.")}${col("rate/direct", 13)}`);
    for (const p of paths) {
      const r = report[p.name];
      const isDirect = p.name === "direct";
      console.log(
        `${p.name.padEnd(10)}${col(num(r.latency.p50))}${col(num(r.latency.p99))}${col(isDirect ? "-" : num(r.added.p50))}${col(isDirect ? "-" : num(r.added.p99))}` +
          `${col(num(r.maxRate?.rate, 0))}${col(r.maxRate?.concurrency ?? "-")}${col(ratio(r.maxRate?.rate, report.direct.maxRate?.rate), 13)}`,
      );
    }
    if (report.portkey) {
      const g = report.gateway;
      const k = report.portkey;
      console.log(
        `\ngateway vs portkey: added p50 ${num(g.added.p50)} vs ${num(k.added.p50)} ms, added p99 ${num(g.added.p99)} vs ${num(k.added.p99)} ms, ` +
          `max rate ${ratio(g.maxRate?.rate, k.maxRate?.rate)} of Portkey's`,
      );
    }
    console.log(`targets: added p50 <= 2 ms, added p99 <= 10 ms, max rate >= Portkey's`);
    // The concurrency-1 step of the rate phase also sends requests back to back.
    const backToBack = (name) => report[name]?.maxRate?.single?.p50;
    if (backToBack("gateway") !== undefined && backToBack("direct") !== undefined)
      console.log(
        `back to back (concurrency 1, p50): gateway ${num(backToBack("gateway"))} ms, direct ${num(backToBack("direct"))} ms: added ${num(backToBack("gateway") - backToBack("direct"))} ms`,
      );
    console.log("\nInside the gateway (Server-Timing, all gateway requests): step p50 / p99 ms");
    for (const [name, values] of Object.entries(serverTimings)) {
      const st = stats(values);
      console.log(`  ${name.padEnd(16)}${col(num(st.p50, 1))}${col(num(st.p99, 1))}`);
    }
    if (process.env.BENCH_JSON) console.log(JSON.stringify(report));
  } finally {
    closeClient();
    for (const close of closers.reverse()) await close();
  }
}

main().catch((err) => {
  console.error(`[bench] ${err.stack ?? err}`);
  process.exit(1);
});

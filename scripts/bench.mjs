// `npm run bench`: what the gateway adds to a request. Starts a fake GPU worker that answers at
// once and the gateway (wrangler dev: local D1, ledger and rate limiter Durable Objects in the
// path), then sends the same streaming chat requests straight to the worker and through the
// gateway, interleaved, in one run, and reports p50/p99 of each and the difference.
//
// Environment: BENCH_REQUESTS (300 per path, sequential), BENCH_CONCURRENCY (16, for the
// concurrent phase; 0 skips it), BENCH_PORT (8799), BENCH_JSON=1 also prints the numbers as JSON.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFakeWorker } from "./bench/fake-worker.mjs";
import { repoRoot } from "./ensure-deps.mjs";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 300);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 16);
const PORT = Number(process.env.BENCH_PORT ?? 8799);
const WARMUP = 30;
const wrangler = join(repoRoot, "node_modules", ".bin", "wrangler");
const log = (text) => console.log(`[bench] ${text}`);

const sqlString = (s) => `'${String(s).replaceAll("'", "''")}'`;

function d1(persistTo, sql) {
  execFileSync(wrangler, ["d1", "execute", "DB", "--local", "--persist-to", persistTo, "--command", sql], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, CI: "1" },
  });
}

async function waitFor(url, headers) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url, { headers })).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`${url} did not come up`);
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const stats = (samples) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
};

// The gateway's own Server-Timing steps (auth, prompt, admit_reserve, first_event), per request.
const serverTimings = {};

// Time until the whole streamed answer has arrived, in milliseconds.
async function timed(url, headers, body) {
  const started = performance.now();
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  const ms = performance.now() - started;
  for (const entry of (res.headers.get("server-timing") ?? "").split(",")) {
    const match = /^\s*([\w-]+);dur=([\d.]+)/.exec(entry);
    if (match) (serverTimings[match[1]] ??= []).push(Number(match[2]));
  }
  if (res.status !== 200 || !(text.includes("[DONE]") || text.includes('"finish_reason"'))) throw new Error(`${url}: ${res.status} ${text.slice(0, 300)}`);
  return ms;
}

async function main() {
  const persistTo = mkdtempSync(join(tmpdir(), "llm-bench-"));
  const secret = randomBytes(16).toString("hex");
  const worker = await startFakeWorker({ secret });
  let gateway = null;
  const cleanup = () => {
    if (gateway && gateway.exitCode === null) gateway.kill("SIGTERM");
    rmSync(persistTo, { recursive: true, force: true });
  };
  process.on("SIGINT", () => {
    cleanup();
    process.exit(130);
  });

  try {
    log(`fake worker at ${worker.url}; preparing local D1 in ${persistTo}`);
    execFileSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], {
      cwd: repoRoot,
      stdio: ["ignore", "ignore", "inherit"],
      env: { ...process.env, CI: "1" },
    });
    const key = `sk-${randomBytes(16).toString("hex")}`;
    const keyHash = createHash("sha256").update(key).digest("hex");
    // Limits far above the benchmark's rate, so every request takes the full admitted path.
    d1(
      persistTo,
      [
        `INSERT INTO accounts (id, name, cache_namespace, rpm_limit, tpm_limit, concurrency_limit) VALUES ('acct_bench', 'bench', ${sqlString(randomBytes(8).toString("hex"))}, 1000000, 1000000000, 10000)`,
        `INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4) VALUES ('key_bench', 'acct_bench', 'bench', ${sqlString(keyHash)}, ${sqlString(key.slice(0, 7))}, ${sqlString(key.slice(-4))})`,
        `INSERT INTO balance_credits (account_id, kind, amount_micros, note) VALUES ('acct_bench', 'topped_up', 1000000000, 'bench')`,
        `INSERT INTO gpu_workers (id, url, secret, models) VALUES ('bench-worker', ${sqlString(worker.url)}, ${sqlString(secret)}, '["deepseek-chat","deepseek-reasoner"]')`,
      ].join("; "),
    );

    log(`starting the gateway (wrangler dev) on port ${PORT}`);
    gateway = spawn(
      wrangler,
      ["dev", "--local", "--port", String(PORT), "--ip", "127.0.0.1", "--persist-to", persistTo, "--show-interactive-dev-session=false", "--log-level", "error"],
      { cwd: repoRoot, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, CI: "1" } },
    );
    const base = `http://127.0.0.1:${PORT}`;
    const auth = { authorization: `Bearer ${key}` };
    await waitFor(`${base}/models`, auth);

    const clientBody = (i) => ({
      model: "deepseek-chat",
      messages: [{ role: "user", content: `Benchmark request ${i}: say hello.` }],
      max_tokens: 64,
      stream: process.env.BENCH_STREAM !== "0",
    });
    // What the gateway itself sends the worker: the same request with continuous usage.
    const workerBody = (i) => ({ ...clientBody(i), stream_options: { include_usage: true, continuous_usage_stats: true } });
    const direct = (i) => timed(`${worker.url}/v1/chat/completions`, { authorization: `Bearer ${secret}`, "x-request-id": `direct-${i}` }, workerBody(i));
    const viaGateway = (i) => timed(`${base}/v1/chat/completions`, auth, clientBody(i));

    log(`warming up (${WARMUP} requests per path)`);
    for (let i = 0; i < WARMUP; i++) {
      await direct(i);
      await viaGateway(i);
    }

    log(`sequential: ${REQUESTS} requests per path, interleaved`);
    const seq = { direct: [], gateway: [], added: [] };
    for (let i = 0; i < REQUESTS; i++) {
      // Alternate which goes first so neither path always gets the warmer caches.
      const [d, g] = i % 2 === 0 ? [await direct(i), await viaGateway(i)] : (([g1, d1]) => [d1, g1])([await viaGateway(i), await direct(i)]);
      seq.direct.push(d);
      seq.gateway.push(g);
      seq.added.push(g - d);
    }

    // What the local runtime costs by itself (wrangler dev's proxy, workerd): a request that
    // does no I/O at all. The pipeline's own cost is roughly the added latency above this floor.
    const floor = [];
    for (let i = 0; i < REQUESTS; i++) {
      const started = performance.now();
      await (await fetch(`${base}/bench-runtime-floor`)).text();
      floor.push(performance.now() - started);
    }

    const conc = { direct: [], gateway: [], added: [] };
    if (CONCURRENCY > 0) {
      log(`concurrent: ${CONCURRENCY} clients, ${REQUESTS} requests per path`);
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < REQUESTS) {
            const i = next++;
            const d = await direct(10_000 + i);
            const g = await viaGateway(10_000 + i);
            conc.direct.push(d);
            conc.gateway.push(g);
            conc.added.push(g - d);
          }
        }),
      );
    }

    const report = {
      sequential: { direct: stats(seq.direct), gateway: stats(seq.gateway), addedPerRequest: stats(seq.added), runtimeFloor: stats(floor) },
      ...(CONCURRENCY > 0 ? { [`concurrent_${CONCURRENCY}`]: { direct: stats(conc.direct), gateway: stats(conc.gateway), addedPerRequest: stats(conc.added) } } : {}),
    };
    const fmt = (ms) => `${ms.toFixed(2)} ms`.padStart(12);
    console.log("\nGateway added latency (streamed chat request, 64 max_tokens, 16 tokens answered at once by the fake worker)");
    console.log("auth + validate + prompt count + rate limiter DO + ledger DO reserve + forward + settle in the path\n");
    console.log(`${"phase".padEnd(16)}${"path".padEnd(20)}${"p50".padStart(12)}${"p99".padStart(12)}`);
    for (const [phase, r] of Object.entries(report)) {
      console.log(`${phase.padEnd(16)}${"direct".padEnd(20)}${fmt(r.direct.p50)}${fmt(r.direct.p99)}`);
      console.log(`${"".padEnd(16)}${"via gateway".padEnd(20)}${fmt(r.gateway.p50)}${fmt(r.gateway.p99)}`);
      console.log(`${"".padEnd(16)}${"added (paired)".padEnd(20)}${fmt(r.addedPerRequest.p50)}${fmt(r.addedPerRequest.p99)}`);
      if (r.runtimeFloor) console.log(`${"".padEnd(16)}${"runtime floor (404)".padEnd(20)}${fmt(r.runtimeFloor.p50)}${fmt(r.runtimeFloor.p99)}`);
    }
    console.log("\nInside the gateway (Server-Timing, all requests): step p50 / p99");
    for (const [name, samples] of Object.entries(serverTimings)) {
      const st = stats(samples);
      console.log(`  ${name.padEnd(18)}${fmt(st.p50)}${fmt(st.p99)}`);
    }
    if (process.env.BENCH_JSON) console.log(JSON.stringify(report));
  } finally {
    cleanup();
    await worker.close();
  }
}

main().catch((err) => {
  console.error(`[bench] ${err.stack ?? err}`);
  process.exit(1);
});

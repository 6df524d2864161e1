// Starts the real gateway for the benchmark with local D1 and Durable Objects, in one of two
// local runtimes:
// - "miniflare" (default): wrangler's own bundle of the worker (`wrangler deploy --dry-run`)
//   served by workerd through Miniflare. Requests reach the gateway worker on a socket of its
//   own (Miniflare's `unsafeDirectSockets`), as on Cloudflare, not through Miniflare's
//   development entry worker, which would add its own hop (~0.2 ms) to every request.
// - "wrangler": `wrangler dev --local`, as `npm start` runs it. Its dev proxy (a second workerd
//   worker plus a Node-side proxy controller) sits in front of the gateway and adds its own
//   milliseconds and CPU to every request; that is wrangler's cost, not the gateway's.
import { execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "../ensure-deps.mjs";

const wrangler = join(repoRoot, "node_modules", ".bin", "wrangler");
const sqlString = (s) => `'${String(s).replaceAll("'", "''")}'`;
const quiet = { cwd: repoRoot, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, CI: "1" } };

async function waitFor(url, headers) {
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url, { headers })).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

// Local D1 with the migrations applied, one account with limits far above the benchmark's rate
// (so every request takes the full admitted path), its key, a large balance and the fake worker.
function prepareDatabase(persistTo, workerUrl, workerSecret) {
  execFileSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persistTo], quiet);
  const key = `sk-${randomBytes(16).toString("hex")}`;
  const keyHash = createHash("sha256").update(key).digest("hex");
  const sql = [
    `INSERT INTO accounts (id, name, cache_namespace, rpm_limit, tpm_limit, concurrency_limit) VALUES ('acct_bench', 'bench', ${sqlString(randomBytes(8).toString("hex"))}, 100000000, 100000000000, 100000)`,
    `INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4) VALUES ('key_bench', 'acct_bench', 'bench', ${sqlString(keyHash)}, ${sqlString(key.slice(0, 7))}, ${sqlString(key.slice(-4))})`,
    `INSERT INTO balance_credits (account_id, kind, amount_micros, note) VALUES ('acct_bench', 'topped_up', 1000000000000, 'bench')`,
    `INSERT INTO gpu_workers (id, url, secret, models) VALUES ('bench-worker', ${sqlString(workerUrl)}, ${sqlString(workerSecret)}, '["deepseek-chat","deepseek-reasoner"]')`,
  ].join("; ");
  execFileSync(wrangler, ["d1", "execute", "DB", "--local", "--persist-to", persistTo, "--command", sql], quiet);
  return key;
}

async function startMiniflare(persistTo, port, inspectorPort) {
  const outdir = join(persistTo, "bundle");
  execFileSync(wrangler, ["deploy", "--dry-run", "--outdir", outdir], quiet);
  // The Miniflare that wrangler itself runs on (a dependency of wrangler, not of ours).
  const miniflare = createRequire(join(repoRoot, "node_modules", "wrangler", "package.json")).resolve("miniflare");
  const { Miniflare } = await import(pathToFileURL(miniflare).href);
  const mf = new Miniflare({
    host: "127.0.0.1",
    port: 0, // Miniflare's entry worker: unused here
    // For a CPU profile of the gateway (Chrome DevTools protocol); off unless asked for.
    ...(inspectorPort ? { inspectorPort } : {}),
    // The same place `wrangler dev --persist-to` keeps local state, so the D1 prepared above is found.
    defaultPersistRoot: join(persistTo, "v3"),
    workers: [
      {
        name: "llm-gateway",
        unsafeDirectSockets: [{ host: "127.0.0.1", port }],
        modules: true,
        modulesRoot: outdir,
        scriptPath: join(outdir, "index.js"),
        modulesRules: [{ type: "Data", include: ["**/*.bin"] }],
        // As wrangler.toml declares them.
        compatibilityDate: "2026-04-01",
        compatibilityFlags: ["nodejs_compat"],
        d1Databases: { DB: "00000000-0000-0000-0000-000000000000" },
        durableObjects: {
          LEDGER: { className: "AccountLedger", useSQLite: true },
          LIMITER: { className: "RateLimiter", useSQLite: true },
          SIGNIN_THROTTLE: { className: "SignInThrottle", useSQLite: true },
          WORKER_HEALTH: { className: "WorkerHealth", useSQLite: true },
        },
        bindings: { ENVIRONMENT: "development" },
      },
    ],
  });
  await mf.ready;
  return () => mf.dispose();
}

function startWranglerDev(persistTo, port) {
  const child = spawn(
    wrangler,
    ["dev", "--local", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", persistTo, "--show-interactive-dev-session=false", "--log-level", "error"],
    quiet,
  );
  return async () => {
    if (child.exitCode === null) child.kill("SIGTERM");
  };
}

export async function startGateway({ runtime, port, workerUrl, workerSecret, inspectorPort }) {
  const persistTo = mkdtempSync(join(tmpdir(), "llm-bench-"));
  const key = prepareDatabase(persistTo, workerUrl, workerSecret);
  const stop = runtime === "wrangler" ? startWranglerDev(persistTo, port) : await startMiniflare(persistTo, port, inspectorPort);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/models`, { authorization: `Bearer ${key}` });
  return {
    url,
    key,
    close: async () => {
      await stop().catch(() => undefined);
      rmSync(persistTo, { recursive: true, force: true });
    },
  };
}

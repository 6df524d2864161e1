// The whole platform on one machine, as a library: GPU workers on CPU, the gateway under
// `wrangler dev`, the operator CLI to register workers and make an account with a key. Used by
// `npm start` (scripts/start.mjs) and by the end-to-end tests (test/e2e), which give it a
// temporary --persist-to folder so they never touch the developer's local state.
//
// Every long-running child gets its own process group, so stop() ends wrangler together with
// the workerd it starts, and a worker killed with SIGKILL is exactly one process.
import { execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { ensureNodeDeps, repoRoot } from "../ensure-deps.mjs";
import { ensurePythonEnv, workerDir } from "../python-env.mjs";
import { devVarsPath, ensureLocalWorkerSecretKey } from "./dev-vars.mjs";

const bin = (name) => join(repoRoot, "node_modules", ".bin", name);
export const embeddedCheckpointDir = join(repoRoot, ".data", "checkpoints", "embedded");
export const MODELS = "deepseek-chat,deepseek-reasoner";
// 64-token blocks: room for one full 64K-context request on the CPU worker.
export const DEFAULT_CACHE_BLOCKS = 1024;
// The embedded model has random weights and never closes its chain of thought; a small thinking
// budget keeps deepseek-reasoner answers on CPU to seconds (a real checkpoint keeps 32768).
const EMBEDDED_MAX_REASONING_TOKENS = 256;
// One intra-op thread is fastest for the tiny embedded model, and robust on busy machines.
const EMBEDDED_WORKER_THREADS = 1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Wrangler's local runtime otherwise fetches Request.cf data from the internet on start (and
// prints stack traces offline); the built-in stand-in values serve local development.
const WRANGLER_ENV = { WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CLOUDFLARE_CF_FETCH_ENABLED: "false" };

// Refuses a port something else listens on, naming the variable that moves it: otherwise a
// stranger's answer on that port would pass for our GPU worker or gateway coming up.
export function assertPortFree(port, variable) {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", (err) =>
      reject(new Error(err.code === "EADDRINUSE" ? `port ${port} is already in use; set ${variable} to a free port (e.g. ${variable}=${port + 1})` : `cannot listen on port ${port} (${variable}): ${err.message}`)),
    );
    server.listen(port, "127.0.0.1", () => server.close(() => resolve()));
  });
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

function runCapture(cmd, args, { cwd = repoRoot, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

// --- long-running children -------------------------------------------------------------------

const live = new Set();
// A last resort when the launcher exits without stop() (an uncaught error, process.exit).
process.on("exit", () => {
  for (const child of live) signalGroup(child, "SIGKILL");
});

function signalGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

// output: "inherit" (npm start) or a file path (tests). onExit(code, signal) fires for an exit
// that stop() did not ask for.
function startChild(name, cmd, args, { cwd = repoRoot, env = {}, output = "inherit", onExit } = {}) {
  const file = output === "inherit" ? null : createWriteStream(output, { flags: "a" });
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ["ignore", file ? "pipe" : "inherit", file ? "pipe" : "inherit"],
    detached: true,
  });
  if (file) {
    child.stdout.pipe(file);
    child.stderr.pipe(file);
  }
  live.add(child);
  let stopping = false;
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      live.delete(child);
      // workerd and other grandchildren may outlive their parent: end the whole group.
      signalGroup(child, "SIGKILL");
      if (!stopping) onExit?.(code, signal);
      resolve({ code, signal });
    }),
  );
  return {
    name,
    pid: child.pid,
    child,
    exited,
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
    // Polite stop (SIGTERM to the group: the GPU worker drains), then SIGKILL after graceMs.
    async stop(graceMs = 5_000) {
      stopping = true;
      if (this.running) {
        signalGroup(child, "SIGTERM");
        const timer = setTimeout(() => signalGroup(child, "SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      signalGroup(child, "SIGKILL");
    },
    // What a crashed machine looks like: SIGKILL, no drain.
    async kill() {
      stopping = true;
      signalGroup(child, "SIGKILL");
      await exited;
    },
  };
}

async function waitFor(url, what, handle, { headers = {}, timeoutMs = 180_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (handle && !handle.running) throw new Error(`${what} exited before it came up`);
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(5_000) });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await sleep(300);
  }
  throw new Error(`${what} did not come up at ${url} within ${timeoutMs / 1000}s`);
}

// --- preparation -----------------------------------------------------------------------------

function embeddedGeneratorHash() {
  const hash = createHash("sha256");
  for (const file of ["make_checkpoint.py"]) {
    const path = join(workerDir, "gpu_worker", "model", file);
    if (existsSync(path)) hash.update(readFileSync(path));
  }
  return hash.digest("hex");
}

// npm packages, the dashboard build, the Python environment and the embedded checkpoint, each
// only when missing (the first run prints its progress).
export async function preparePlatform({ checkpoint, log = console.log, needWorker = true } = {}) {
  ensureNodeDeps();
  if (!needWorker) return {};
  const python = ensurePythonEnv();
  const dir = checkpoint ?? embeddedCheckpointDir;
  // The embedded checkpoint is rebuilt whenever the code that writes it changes.
  const stampFile = join(dir, ".generator-sha256");
  const stamp = embeddedGeneratorHash();
  const stale = !checkpoint && (!existsSync(join(dir, "config.json")) || !existsSync(stampFile) || readFileSync(stampFile, "utf8") !== stamp);
  if (stale) {
    log("writing the embedded DeepSeek-V3-architecture checkpoint (seeded random weights, real tokenizer)...");
    await new Promise((resolve, reject) => {
      const child = spawn(python, ["-m", "gpu_worker.model.make_checkpoint", "--out", dir], {
        cwd: workerDir,
        stdio: "inherit",
        env: { ...process.env, PYTHONPATH: workerDir },
      });
      child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`make_checkpoint exited with ${code}`))));
    });
    writeFileSync(stampFile, stamp);
  }
  return { python, checkpoint: dir, embedded: !checkpoint };
}

// --- components ------------------------------------------------------------------------------

export async function startGpuWorker({
  python,
  checkpoint,
  port,
  secret = randomBytes(24).toString("hex"),
  diskCacheDir,
  numCacheBlocks = DEFAULT_CACHE_BLOCKS,
  threads,
  output,
  onExit,
  extraArgs = [],
}) {
  port ??= await freePort();
  // --parent-pid: the worker exits when this launcher dies, even by SIGKILL (no orphan on the port).
  const args = ["-m", "gpu_worker.server", "--checkpoint", checkpoint, "--host", "127.0.0.1", "--port", String(port), "--secret", secret, "--parent-pid", String(process.pid)];
  if (diskCacheDir) args.push("--disk-cache-dir", diskCacheDir);
  if (numCacheBlocks) args.push("--num-cache-blocks", String(numCacheBlocks));
  if (threads) args.push("--threads", String(threads));
  args.push(...extraArgs);
  const handle = startChild(`GPU worker :${port}`, python, args, { cwd: workerDir, env: { PYTHONPATH: workerDir }, output, onExit });
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(`${url}/health`, handle.name, handle, { headers: { authorization: `Bearer ${secret}` } });
  } catch (err) {
    await handle.kill();
    throw err;
  }
  return Object.assign(handle, { url, port, secret });
}

// wrangler dev reloads the gateway whenever a source file changes, dropping requests in flight
// (and, seen here, sometimes dying with EPIPE). Tests instead serve a snapshot: the gateway
// bundled once, under a copy of wrangler.toml that points at the bundle, unbundled and unwatched.
async function snapshotGateway(dir) {
  const bundle = join(dir, "bundle");
  await runCapture(bin("wrangler"), ["deploy", "--dry-run", "--outdir", bundle], { env: { CI: "1", ...WRANGLER_ENV } });
  const config = readFileSync(join(repoRoot, "wrangler.toml"), "utf8")
    .replace(/^main = .*$/m, 'main = "bundle/index.js"\nno_bundle = true\nfind_additional_modules = true\nbase_dir = "bundle"')
    .replace(/^migrations_dir = "(.*)"/m, (_, p) => `migrations_dir = ${JSON.stringify(join(repoRoot, p))}`)
    .replace(/^directory = "(.*)"/m, (_, p) => `directory = ${JSON.stringify(join(repoRoot, p))}`);
  writeFileSync(join(dir, "wrangler.toml"), config);
  // wrangler reads the local secrets next to the config it is given.
  if (existsSync(devVarsPath)) copyFileSync(devVarsPath, join(dir, ".dev.vars"));
  return join(dir, "wrangler.toml");
}

export async function startGateway({ port, persistTo, vars = {}, output, onExit, readyKey, snapshotDir }) {
  port ??= await freePort();
  const config = snapshotDir ? await snapshotGateway(snapshotDir) : null;
  const args = ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(await freePort()), "--show-interactive-dev-session=false"];
  if (persistTo) args.push("--persist-to", persistTo);
  if (config) args.push("--config", config);
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  const handle = startChild(`gateway :${port}`, bin("wrangler"), args, {
    env: WRANGLER_ENV,
    output,
    onExit,
  });
  const url = `http://127.0.0.1:${port}`;
  try {
    const headers = readyKey ? { authorization: `Bearer ${readyKey}` } : {};
    await waitFor(readyKey ? `${url}/models` : `${url}/dashboard/api/auth/session`, handle.name, handle, { headers });
  } catch (err) {
    await handle.kill();
    throw err;
  }
  return Object.assign(handle, { url, port });
}

// The operator CLI (scripts/admin.ts) against the local D1 database (or the one under persistTo).
export async function admin(args, { persistTo } = {}) {
  const extra = persistTo ? ["--persist-to", persistTo] : [];
  const out = await runCapture(bin("tsx"), [join("scripts", "admin.ts"), ...args, ...extra, "--json"], { env: { CI: "1" } });
  return JSON.parse(out.trim().split("\n").pop());
}

// Read-only SQL against the gateway's local D1 (tests read usage rows with it).
export async function sql(command, { persistTo } = {}) {
  const extra = persistTo ? ["--persist-to", persistTo] : [];
  const out = await runCapture(bin("wrangler"), ["d1", "execute", "DB", "--local", ...extra, "--json", "--command", command], {
    env: { CI: "1", ...WRANGLER_ENV },
  });
  return JSON.parse(out.slice(out.indexOf("[")))[0]?.results ?? [];
}

// --- the platform ----------------------------------------------------------------------------

// Starts everything and returns handles. Options:
//   workers: how many embedded GPU workers (ignored with upstream)   workerPorts: their ports
//   upstream: { url, secret, models } of an external OpenAI-compatible engine instead
//   checkpoint: a Hugging Face checkpoint dir instead of the embedded one
//   gatewayPort, persistTo (wrangler state; default: the developer's .wrangler/state)
//   dataDir: where disk caches (and logs, with logs: true) go
//   accountName, grantUsd, keyName: the development account
//   frozenGateway: serve a snapshot of the gateway code, not reloaded when sources change (tests)
//   maxReasoningTokens: the embedded model's thinking budget (default 256: its random weights never stop thinking)
//   onUnexpectedExit(name, code, signal): a child died on its own
export async function startPlatform(options = {}) {
  const log = options.log ?? ((text) => console.log(`[start] ${text}`));
  const dataDir = options.dataDir ?? join(repoRoot, ".data");
  const persistTo = options.persistTo;
  const logDir = options.logs ? join(dataDir, "logs") : null;
  if (logDir) mkdirSync(logDir, { recursive: true });
  const output = (name) => (logDir ? join(logDir, `${name}.log`) : "inherit");
  const onExit = (name) => (code, signal) => options.onUnexpectedExit?.(name, code, signal);

  const handles = [];
  const platform = {
    persistTo,
    dataDir,
    logDir,
    workers: [],
    upstream: null,
    gateway: null,
    async stop() {
      await Promise.all(handles.map((h) => h.stop()));
    },
  };
  try {
    // The gateway and the operator CLI share the key that encrypts worker secrets (.dev.vars).
    ensureLocalWorkerSecretKey();
    const prep = await preparePlatform({ checkpoint: options.checkpoint, log, needWorker: !options.upstream });
    // Workers load while the operator CLI registers them (each CLI call runs wrangler: seconds).
    const upstreams = [];
    let workersReady = Promise.resolve();
    if (options.upstream) {
      platform.upstream = { url: options.upstream.url, secret: options.upstream.secret || "none", models: options.upstream.models ?? MODELS };
      upstreams.push({ id: "upstream", ...platform.upstream });
    } else {
      const count = options.workers ?? 1;
      const specs = [];
      for (let i = 0; i < count; i++) {
        const port = options.workerPorts?.[i] ?? (await freePort());
        const spec = { id: count === 1 ? "local-worker" : `local-worker-${i + 1}`, port, secret: randomBytes(24).toString("hex") };
        specs.push(spec);
        upstreams.push({ id: spec.id, url: `http://127.0.0.1:${port}`, secret: spec.secret, models: MODELS });
      }
      log(`starting ${count} GPU worker${count > 1 ? "s" : ""} on CPU (checkpoint ${prep.checkpoint})...`);
      workersReady = Promise.all(
        specs.map(async (spec) => {
          const worker = await startGpuWorker({
            python: prep.python,
            checkpoint: prep.checkpoint,
            port: spec.port,
            secret: spec.secret,
            diskCacheDir: join(dataDir, "kv-cache", `worker-${spec.port}`),
            numCacheBlocks: options.numCacheBlocks ?? DEFAULT_CACHE_BLOCKS,
            threads: options.workerThreads ?? (prep.embedded ? EMBEDDED_WORKER_THREADS : undefined),
            extraArgs: prep.embedded ? ["--max-reasoning-tokens", String(options.maxReasoningTokens ?? EMBEDDED_MAX_REASONING_TOKENS)] : [],
            output: output(`worker-${spec.port}`),
            onExit: onExit(`GPU worker :${spec.port}`),
          });
          handles.push(worker);
          worker.id = spec.id;
          log(`GPU worker ${spec.id} is up at ${worker.url}`);
          return worker;
        }),
      ).then((workers) => void (platform.workers = workers));
    }

    const registered = (async () => {
      log("applying D1 migrations and registering the upstream" + (upstreams.length > 1 ? "s" : "") + "...");
      await admin(["migrate"], { persistTo });
      for (const u of upstreams) await admin(["add-worker", "--id", u.id, "--url", u.url, "--secret", u.secret, "--models", u.models], { persistTo });
      const accountName = options.accountName ?? "development";
      const accounts = await admin(["list-accounts"], { persistTo });
      let account = accounts.find((a) => a.name === accountName)?.id;
      if (!account) {
        account = (await admin(["create-account", "--name", accountName], { persistTo })).id;
        await admin(["grant", "--account", account, "--amount", String(options.grantUsd ?? 10), "--note", "development grant"], { persistTo });
      }
      const { key } = await admin(["create-key", "--account", account, "--name", options.keyName ?? `npm start ${new Date().toISOString()}`], { persistTo });
      platform.account = account;
      platform.key = key;
    })();
    const [workersResult, registeredResult] = await Promise.allSettled([workersReady, registered]);
    for (const r of [workersResult, registeredResult]) if (r.status === "rejected") throw r.reason;

    log("starting the gateway (wrangler dev, local D1 and Durable Objects)...");
    platform.gateway = await startGateway({
      port: options.gatewayPort,
      persistTo,
      vars: options.gatewayVars,
      output: output("gateway"),
      onExit: onExit("gateway"),
      readyKey: platform.key,
      snapshotDir: options.frozenGateway ? join(dataDir, "gateway-snapshot") : undefined,
    });
    handles.push(platform.gateway);
    platform.baseURL = platform.gateway.url;
    platform.admin = (args) => admin(args, { persistTo });
    platform.sql = (command) => sql(command, { persistTo });
    return platform;
  } catch (err) {
    await platform.stop();
    throw err;
  }
}

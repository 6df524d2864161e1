// `npm start`: the whole platform on one machine. Prepares what is missing (npm packages, the
// GPU worker's Python environment, the embedded checkpoint), starts the GPU worker on CPU,
// registers it, starts the gateway with its dashboard (wrangler dev: local D1 and Durable
// Objects), and prints a development key and a curl line. Ctrl-C stops every process.
//
// Environment:
//   PORT (8787)              gateway port         WORKER_PORT (8100)   GPU worker port
//   CHECKPOINT_DIR           serve this Hugging Face DeepSeek-V3 checkpoint instead of the embedded one
//   UPSTREAM_URL, UPSTREAM_SECRET, UPSTREAM_MODELS
//                            use an external OpenAI-compatible engine instead of starting a worker
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ensureNodeDeps, repoRoot } from "./ensure-deps.mjs";
import { ensurePythonEnv, workerDir } from "./python-env.mjs";

const gatewayPort = Number(process.env.PORT ?? 8787);
const workerPort = Number(process.env.WORKER_PORT ?? 8100);
const children = [];
const bin = (name) => join(repoRoot, "node_modules", ".bin", name);
const step = (text) => console.log(`[start] ${text}`);

function run(cmd, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, stdio: options.capture ? ["ignore", "pipe", "inherit"] : "inherit", env: { ...process.env, ...options.env } });
    let out = "";
    child.stdout?.on("data", (d) => (out += d));
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}`))));
  });
}

function startLongRunning(name, cmd, args, options = {}) {
  const child = spawn(cmd, args, { cwd: options.cwd ?? repoRoot, stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, ...options.env } });
  child.on("exit", (code, signal) => {
    if (!shuttingDown) {
      console.error(`[start] ${name} exited (${signal ?? code}); stopping everything`);
      shutdown(1);
    }
  });
  children.push(child);
  return child;
}

async function waitFor(url, what, { headers = {}, timeoutMs = 180_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { headers });
      if (res.ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`${what} did not come up at ${url}`);
}

const admin = (...args) => run(bin("tsx"), [join("scripts", "admin.ts"), ...args, "--json"], { capture: true }).then((out) => JSON.parse(out.trim().split("\n").pop()));

let shuttingDown = false;
function shutdown(code = 0) {
  shuttingDown = true;
  for (const child of children) if (child.exitCode === null) child.kill("SIGTERM");
  setTimeout(() => process.exit(code), 1500).unref();
}
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));

async function startEmbeddedWorker() {
  const python = ensurePythonEnv();
  const checkpoint = process.env.CHECKPOINT_DIR ?? join(repoRoot, ".data", "checkpoints", "embedded");
  if (!process.env.CHECKPOINT_DIR && !existsSync(join(checkpoint, "config.json"))) {
    step("writing the embedded DeepSeek-V3-architecture checkpoint (seeded random weights, real tokenizer)...");
    await run(python, ["-m", "gpu_worker.model.make_checkpoint", "--out", checkpoint], { env: { PYTHONPATH: workerDir } });
  }
  const secret = randomBytes(24).toString("hex");
  step(`starting the GPU worker on CPU (checkpoint ${checkpoint})...`);
  startLongRunning("GPU worker", python, [
      "-m", "gpu_worker.server", "--checkpoint", checkpoint, "--host", "127.0.0.1", "--port", String(workerPort), "--secret", secret,
      "--disk-cache-dir", join(repoRoot, ".data", "kv-cache", `worker-${workerPort}`),
    ], {
    cwd: workerDir,
    env: { PYTHONPATH: workerDir, WORKER_SECRET: secret },
  });
  const url = `http://127.0.0.1:${workerPort}`;
  await waitFor(`${url}/health`, "the GPU worker", { headers: { authorization: `Bearer ${secret}` } });
  return { url, secret, models: "deepseek-chat,deepseek-reasoner" };
}

async function main() {
  ensureNodeDeps();
  const upstream = process.env.UPSTREAM_URL
    ? { url: process.env.UPSTREAM_URL, secret: process.env.UPSTREAM_SECRET ?? "", models: process.env.UPSTREAM_MODELS ?? "deepseek-chat,deepseek-reasoner" }
    : await startEmbeddedWorker();

  step("applying D1 migrations and registering the upstream...");
  await admin("add-worker", "--id", "local-worker", "--url", upstream.url, "--secret", upstream.secret || "none", "--models", upstream.models);
  const accounts = await admin("list-accounts");
  let account = accounts.find((a) => a.name === "development")?.id;
  if (!account) {
    account = (await admin("create-account", "--name", "development")).id;
    await admin("grant", "--account", account, "--amount", "10", "--note", "development grant");
  }
  const { key } = await admin("create-key", "--account", account, "--name", `npm start ${new Date().toISOString()}`);

  step("starting the gateway (wrangler dev, local D1 and Durable Objects)...");
  startLongRunning("gateway", bin("wrangler"), ["dev", "--local", "--port", String(gatewayPort), "--ip", "127.0.0.1", "--show-interactive-dev-session=false"]);
  const base = `http://127.0.0.1:${gatewayPort}`;
  await waitFor(`${base}/models`, "the gateway", { headers: { authorization: `Bearer ${key}` } });

  console.log(`
  The platform is running.
    API base URL   ${base}        (OpenAI SDK: baseURL ${base}/v1; Anthropic SDK: ${base}/anthropic)
    Dashboard      ${base}/dashboard/
    Upstream       ${upstream.url}
    Account        ${account} (development)
    API key        ${key}

  Try it:
    curl ${base}/chat/completions -H "Authorization: Bearer ${key}" -H "Content-Type: application/json" \\
      -d '{"model":"deepseek-chat","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'

  Operator CLI: npm run admin -- --help        Ctrl-C stops everything.
`);
}

main().catch((err) => {
  console.error(`[start] ${err.message}`);
  shutdown(1);
});

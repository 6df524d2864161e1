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
//   PERSIST_TO               wrangler's local state folder (default .wrangler/state)
//   DATA_DIR                 the GPU worker's disk cache goes under it (default .data)
//   FROZEN_GATEWAY=1         serve a snapshot of the gateway, not reloaded on source changes
import { assertPortFree, startPlatform } from "./lib/platform.mjs";

const log = (text) => console.log(`[start] ${text}`);
let platform = null;
let stopping = false;

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  log("stopping...");
  try {
    await platform?.stop();
  } finally {
    process.exit(code);
  }
}
process.on("SIGINT", () => shutdown(0));
process.on("SIGTERM", () => shutdown(0));
process.on("SIGHUP", () => shutdown(0));

async function main() {
  const env = process.env;
  const gatewayPort = Number(env.PORT ?? 8787);
  const workerPort = Number(env.WORKER_PORT ?? 8100);
  await assertPortFree(gatewayPort, "PORT");
  if (!env.UPSTREAM_URL) await assertPortFree(workerPort, "WORKER_PORT");
  platform = await startPlatform({
    log,
    gatewayPort,
    workerPorts: [workerPort],
    checkpoint: env.CHECKPOINT_DIR || undefined,
    upstream: env.UPSTREAM_URL ? { url: env.UPSTREAM_URL, secret: env.UPSTREAM_SECRET ?? "", models: env.UPSTREAM_MODELS || undefined } : undefined,
    persistTo: env.PERSIST_TO || undefined,
    dataDir: env.DATA_DIR || undefined,
    frozenGateway: env.FROZEN_GATEWAY === "1",
    onUnexpectedExit: (name, code, signal) => {
      if (stopping) return;
      console.error(`[start] ${name} exited (${signal ?? code}); stopping everything`);
      shutdown(1);
    },
  });
  if (stopping) return;
  const base = platform.baseURL;
  const upstream = platform.upstream?.url ?? platform.workers.map((w) => w.url).join(", ");
  console.log(`
  The platform is running.
    API base URL   ${base}        (OpenAI SDK: baseURL ${base}/v1; Anthropic SDK: ${base}/anthropic)
    Dashboard      ${base}/dashboard/
    Upstream       ${upstream}
    Account        ${platform.account} (development)
    API key        ${platform.key}

  Try it:
    curl ${base}/chat/completions -H "Authorization: Bearer ${platform.key}" -H "Content-Type: application/json" \\
      -d '{"model":"deepseek-chat","messages":[{"role":"user","content":"Hello!"}],"max_tokens":32}'

  Operator CLI: npm run admin -- --help        Ctrl-C stops everything.
`);
}

main().catch((err) => {
  console.error(`[start] ${err.message}`);
  shutdown(1);
});

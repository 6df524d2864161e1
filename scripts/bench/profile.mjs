// A CPU profile of the gateway under the benchmark's request (for finding where its time goes):
// starts it in Miniflare with the inspector on, records N requests with the V8 profiler and
// prints the functions with the most self time. Writes the .cpuprofile (open it in DevTools).
//   node scripts/bench/profile.mjs [requests=500] [concurrency=1]
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../ensure-deps.mjs";
import { startGateway } from "./gateway.mjs";
import { closeClient, completeAnswer, post } from "./http-client.mjs";

const N = Number(process.argv[2] ?? 500);
const CONCURRENCY = Number(process.argv[3] ?? 1);
const INSPECTOR_PORT = 9339;
const secret = randomBytes(16).toString("hex");
const upstream = spawn(process.execPath, [join(repoRoot, "scripts", "bench", "fake-worker.mjs"), secret], { stdio: ["ignore", "pipe", "inherit"] });
const workerUrl = JSON.parse(String((await once(upstream.stdout, "data"))[0])).url;
const gateway = await startGateway({ runtime: "miniflare", port: 8797, workerUrl, workerSecret: secret, inspectorPort: INSPECTOR_PORT });
try {
  const body = (i) => ({ model: "deepseek-chat", messages: [{ role: "user", content: `Benchmark request ${i}: say hello.` }], max_tokens: 64, stream: true });
  const run = async (count, offset) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < count) {
          const r = await post(`${gateway.url}/v1/chat/completions`, { authorization: `Bearer ${gateway.key}` }, body(offset + next++));
          if (!completeAnswer(r)) throw new Error(`${r.status} ${r.text.slice(0, 200)}`);
        }
      }),
    );
  };
  await run(100, 0);

  const { default: WebSocket } = await import(join(repoRoot, "node_modules", "ws", "index.js"));
  const targets = await (await fetch(`http://127.0.0.1:${INSPECTOR_PORT}/json`)).json();
  const target = targets.find((t) => t.title?.includes("llm-gateway")) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await once(ws, "open");
  let id = 0;
  const pending = new Map();
  ws.on("message", (data) => {
    const msg = JSON.parse(String(data));
    if (msg.id && pending.has(msg.id)) pending.get(msg.id)(msg);
  });
  const call = (method, params = {}) =>
    new Promise((resolve) => {
      pending.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await call("Profiler.enable");
  await call("Profiler.setSamplingInterval", { interval: 100 });
  await call("Profiler.start");
  const started = performance.now();
  await run(N, 1000);
  const wall = performance.now() - started;
  const { result } = await call("Profiler.stop");
  ws.close();
  const profile = result.profile;
  writeFileSync("/tmp/gateway.cpuprofile", JSON.stringify(profile));

  const dt = profile.timeDeltas;
  const selfUs = new Map();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const key = `${f.functionName || "(anon)"} ${f.url.split("/").pop()}:${f.lineNumber + 1}`;
    selfUs.set(key, (selfUs.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const idle = selfUs.get("(idle) :0") ?? 0;
  console.log(`${N} requests, concurrency ${CONCURRENCY}: ${(wall / N).toFixed(2)} ms wall per request; profiled ${(total / 1000).toFixed(0)} ms, busy ${((total - idle) / 1000 / N).toFixed(2)} ms per request`);
  for (const [key, us] of [...selfUs].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`${(us / 1000 / N).toFixed(3).padStart(8)} ms/req  ${key}`);
} finally {
  closeClient();
  await gateway.close();
  upstream.kill("SIGTERM");
}

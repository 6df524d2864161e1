// CPU time per request of two gateway checkouts (A: the path given, B: this one), measured as
// the workerd process's user+system time over N requests at a fixed concurrency: unlike
// wall-clock rates it holds up on a machine busy with other work.
//   node scripts/bench/cpu-ab.mjs <other checkout> [requests=2000] [concurrency=8] [rounds=8]
// The two alternate in `rounds` rounds; the median round of each is the figure (a VM's neighbours
// move single rounds by ±30%).
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { repoRoot } from "../ensure-deps.mjs";
import { closeClient, completeAnswer, post } from "./http-client.mjs";

const [other, requests = "2000", concurrency = "8", rounds = "8"] = process.argv.slice(2);
const N = Number(requests);
const C = Number(concurrency);
const ROUNDS = Number(rounds);
const TICKS = 100; // USER_HZ

const cpuMs = (pid) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS;
};
const pidListening = (port) => Number(/pid=(\d+)/.exec(execFileSync("ss", ["-ltnpH", `sport = :${port}`], { encoding: "utf8" }))?.[1]);

const secret = randomBytes(16).toString("hex");
const child = spawn(process.execPath, [join(repoRoot, "scripts", "bench", "fake-worker.mjs"), secret], { stdio: ["ignore", "pipe", "inherit"] });
const upstream = JSON.parse(String((await once(child.stdout, "data"))[0])).url;
const gateways = [];
try {
  for (const [name, root, port] of [["A", resolve(other), 8821], ["B", repoRoot, 8823]]) {
    const { startGateway } = await import(pathToFileURL(join(root, "scripts", "bench", "gateway.mjs")).href);
    const g = await startGateway({ runtime: "miniflare", port, workerUrl: upstream, workerSecret: secret });
    gateways.push({ name, ...g, pid: pidListening(port), samples: [] });
  }
  const body = (i) => ({ model: "deepseek-chat", messages: [{ role: "user", content: `Benchmark request ${i}: say hello.` }], max_tokens: 64, stream: true });
  const run = async (g, count, offset) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: C }, async () => {
        while (next < count) {
          const r = await post(`${g.url}/v1/chat/completions`, { authorization: `Bearer ${g.key}` }, body(offset + next++));
          if (!completeAnswer(r)) throw new Error(`${g.name}: ${r.status} ${r.text.slice(0, 200)}`);
        }
      }),
    );
  };
  for (const g of gateways) await run(g, 200, 0);
  for (let round = 0; round < ROUNDS; round++) {
    for (const g of round % 2 ? [...gateways].reverse() : gateways) {
      await new Promise((r) => setTimeout(r, 300)); // let the previous batch's settlements finish
      const before = cpuMs(g.pid);
      await run(g, N / ROUNDS, 1_000_000 * (round + 1));
      await new Promise((r) => setTimeout(r, 300));
      g.samples.push((cpuMs(g.pid) - before) / (N / ROUNDS));
    }
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const g of gateways) console.log(`${g.name}: median ${median(g.samples).toFixed(3)} (${g.samples.map((s) => s.toFixed(2)).join(" ")}) ms of workerd CPU per request (concurrency ${C})`);
  const [a, b] = gateways.map((g) => median(g.samples));
  console.log(`B/A: ${(b / a).toFixed(3)}`);
} finally {
  closeClient();
  for (const g of gateways) await g.close();
  child.kill("SIGTERM");
}

// `npm start` itself (scripts/start.mjs) in external-upstream mode: an OpenAI-compatible engine
// given by UPSTREAM_URL/UPSTREAM_SECRET stands in for the embedded worker. The printed curl line
// works, the dashboard is served, and Ctrl-C (SIGINT to the foreground process group, as a
// terminal sends it) stops every process it started, wrangler's workerd included.
import { execFile, spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { promisify } from "node:util";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
// @ts-expect-error plain ESM module without types
import { freePort } from "../../scripts/lib/platform.mjs";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream";
import { alive, descendants, launchNpmStart } from "./launcher";

let upstream: FakeUpstream | undefined;
let dir: string | undefined;
afterAll(async () => {
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it("npm start with an external upstream: banner, working curl line, dashboard; Ctrl-C stops everything", async () => {
  upstream = await startFakeUpstream({ secret: "external-engine-secret" });
  dir = mkdtempSync(join(tmpdir(), "e2e-npm-start-"));
  const port = await freePort();
  const launch = launchNpmStart({ PORT: String(port), UPSTREAM_URL: upstream.url, UPSTREAM_SECRET: upstream.secret, PERSIST_TO: join(dir, "state"), DATA_DIR: dir, FROZEN_GATEWAY: "1" });
  try {
    await launch.running();
    const out = launch.output();
    expect(out).toContain(`API base URL   http://127.0.0.1:${port}`);
    expect(out).toContain(`Dashboard      http://127.0.0.1:${port}/dashboard/`);
    expect(out).toContain(`Upstream       ${upstream.url}`);
    // Offline, wrangler's Request.cf download printed stack traces: npm start turns it off.
    expect(out).not.toMatch(/request\.cf|cf\.json/i);

    // The printed curl line, run as printed.
    // (the banner's, not wrangler's own hint for testing cron triggers)
    const start = out.indexOf("curl ", out.indexOf("Try it:"));
    const curl = out.slice(start, out.indexOf("}'", start) + 2).replace("\\\n", " ");
    // (asynchronously: the fake upstream answers from this process's event loop)
    const { stdout } = await promisify(execFile)("bash", ["-c", `${curl} --silent --max-time 60`]);
    const answer = JSON.parse(stdout);
    expect(answer.object).toBe("chat.completion");
    expect(answer.choices[0].message.content).toContain("fake worker");
    const seen = upstream.requests.at(-1)!;
    expect(seen.path).toBe("/v1/chat/completions");
    expect(seen.headers.authorization).toBe(`Bearer ${upstream.secret}`);

    const dashboard = await fetch(`http://127.0.0.1:${port}/dashboard/`);
    expect(dashboard.status).toBe(200);
    expect(dashboard.headers.get("content-type")).toContain("text/html");

    const children = descendants(launch.pid);
    expect(children.length).toBeGreaterThan(0);
    expect(children.some((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("workerd"))).toBe(true);
    expect(await launch.interrupt()).toBe(0); // Ctrl-C
    await expect.poll(() => children.filter(alive), { timeout: 10_000 }).toEqual([]);
    await expect(fetch(`http://127.0.0.1:${port}/models`)).rejects.toThrow();
  } finally {
    launch.kill();
  }
});

// Something else (not ours) listening on a port npm start wants.
async function occupy(port: number): Promise<() => Promise<void>> {
  const stranger = createServer((socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"));
  await new Promise<void>((resolve) => stranger.listen(port, "127.0.0.1", resolve));
  return () => new Promise<void>((resolve) => stranger.close(() => resolve()));
}

it.each(["PORT", "WORKER_PORT"] as const)("npm start refuses a %s that is already in use, naming the port and the variable", async (variable) => {
  const port = await freePort();
  const release = await occupy(port);
  try {
    const ports = variable === "PORT" ? { PORT: String(port), WORKER_PORT: String(await freePort()) } : { PORT: String(await freePort()), WORKER_PORT: String(port) };
    const run = spawnSync(process.execPath, ["scripts/start.mjs"], { cwd: join(import.meta.dirname, "..", ".."), encoding: "utf8", env: { ...process.env, ...ports }, timeout: 60_000 });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`port ${port} is already in use; set ${variable} to a free port`);
    expect(run.stdout).not.toContain("is up");
  } finally {
    await release();
  }
});

it("the GPU worker dies with its launcher, even when the launcher is killed with SIGKILL", async () => {
  const port = await freePort();
  // A launcher that starts one embedded worker (as npm start does), then waits.
  const script = `
    const m = await import(${JSON.stringify(join(import.meta.dirname, "..", "..", "scripts", "lib", "platform.mjs"))});
    const prep = await m.preparePlatform({});
    const w = await m.startGpuWorker({ python: prep.python, checkpoint: prep.checkpoint, port: ${port}, threads: 1, extraArgs: ["--max-reasoning-tokens", "16"] });
    console.log("WORKER_PID " + w.pid);
    setInterval(() => {}, 1000);`;
  const launcher = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  launcher.stdout!.on("data", (d) => (out += d));
  try {
    await expect.poll(() => /WORKER_PID (\d+)/.exec(out)?.[1] ?? (launcher.exitCode !== null ? "exited" : null), { timeout: 150_000, interval: 500 }).toMatch(/^\d+$/);
    const workerPid = Number(/WORKER_PID (\d+)/.exec(out)![1]);
    expect(alive(workerPid)).toBe(true);
    launcher.kill("SIGKILL");
    await expect.poll(() => alive(workerPid), { timeout: 30_000, interval: 250 }).toBe(false);
    await expect(fetch(`http://127.0.0.1:${port}/health`)).rejects.toThrow(); // the port is free again
  } finally {
    launcher.kill("SIGKILL");
  }
});

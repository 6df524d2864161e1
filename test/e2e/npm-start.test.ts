// `npm start` itself (scripts/start.mjs) in external-upstream mode: an OpenAI-compatible engine
// given by UPSTREAM_URL/UPSTREAM_SECRET stands in for the embedded worker. The printed curl line
// works, the dashboard is served, and Ctrl-C (SIGINT to the foreground process group, as a
// terminal sends it) stops every process it started, wrangler's workerd included.
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
// @ts-expect-error plain ESM module without types
import { freePort } from "../../scripts/lib/platform.mjs";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream";

const root = join(import.meta.dirname, "..", "..");
let upstream: FakeUpstream | undefined;
let dir: string | undefined;
afterAll(async () => {
  await upstream?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// Every live descendant of a process (children of the launcher run in their own process groups).
function descendants(pid: number): number[] {
  const parentOf = new Map<number, number>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] !== "Z") parentOf.set(Number(entry), Number(fields[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parentOf) if (parent === p) out.push(child), walk(child);
  };
  walk(pid);
  return out;
}
const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
};

it("npm start with an external upstream: banner, working curl line, dashboard; Ctrl-C stops everything", async () => {
  upstream = await startFakeUpstream({ secret: "external-engine-secret" });
  dir = mkdtempSync(join(tmpdir(), "e2e-npm-start-"));
  const port = await freePort();
  const launcher = spawn(process.execPath, [join(root, "scripts", "start.mjs")], {
    cwd: root,
    detached: true, // its own process group, like a shell's foreground job
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PORT: String(port), UPSTREAM_URL: upstream.url, UPSTREAM_SECRET: upstream.secret, PERSIST_TO: join(dir, "state"), DATA_DIR: dir, FROZEN_GATEWAY: "1" },
  });
  let out = "";
  launcher.stdout!.on("data", (d) => (out += d));
  launcher.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => launcher.once("exit", (code) => resolve(code)));
  try {
    await expect.poll(() => out.includes("The platform is running") || launcher.exitCode !== null, { timeout: 150_000, interval: 500 }).toBe(true);
    expect(launcher.exitCode, out).toBeNull();
    expect(out).toContain(`API base URL   http://127.0.0.1:${port}`);
    expect(out).toContain(`Dashboard      http://127.0.0.1:${port}/dashboard/`);
    expect(out).toContain(`Upstream       ${upstream.url}`);

    // The printed curl line, run as printed.
    const curl = out.slice(out.indexOf("curl "), out.indexOf("}'", out.indexOf("curl ")) + 2).replace("\\\n", " ");
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

    const children = descendants(launcher.pid!);
    expect(children.length).toBeGreaterThan(0);
    expect(children.some((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("workerd"))).toBe(true);
    process.kill(-launcher.pid!, "SIGINT"); // Ctrl-C
    expect(await exited).toBe(0);
    await expect.poll(() => children.filter(alive), { timeout: 10_000 }).toEqual([]);
    await expect(fetch(`http://127.0.0.1:${port}/models`)).rejects.toThrow();
  } finally {
    if (launcher.exitCode === null) {
      // A launcher killed outright cannot stop its children (they have their own groups).
      for (const pid of descendants(launcher.pid!)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      process.kill(-launcher.pid!, "SIGKILL");
    }
  }
});

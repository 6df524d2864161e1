// `npm start` itself (scripts/start.mjs) in external-upstream mode: an OpenAI-compatible engine
// given by UPSTREAM_URL/UPSTREAM_SECRET stands in for the embedded worker. The printed curl line
// works, the dashboard is served, and Ctrl-C (SIGINT to the foreground process group, as a
// terminal sends it) stops every process it started, wrangler's workerd included.
import { execFile } from "node:child_process";
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

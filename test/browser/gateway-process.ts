// A throwaway gateway for browser tests: local D1 (migrated) and Durable Objects persisted
// under a temp folder, served by `wrangler dev` on a free port.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const root = join(import.meta.dirname, "..", "..");
const wrangler = join(root, "node_modules", ".bin", "wrangler");

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}

export interface Gateway {
  url: string;
  sql<T = Record<string, unknown>>(command: string): Promise<T[]>;
  stop(): Promise<void>;
}

export async function startGateway(vars: Record<string, string> = {}): Promise<Gateway> {
  const persist = mkdtempSync(join(tmpdir(), "gw-browser-"));
  // No Request.cf download (it prints stack traces offline).
  const env = { ...process.env, CI: "true", WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", CLOUDFLARE_CF_FETCH_ENABLED: "false" };
  await run(wrangler, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", persist], { cwd: root, env });

  const sql = async <T>(command: string): Promise<T[]> => {
    const { stdout } = await run(wrangler, ["d1", "execute", "DB", "--local", "--persist-to", persist, "--json", "--command", command], {
      cwd: root,
      env,
      maxBuffer: 64 * 1024 * 1024,
    });
    const parsed = JSON.parse(stdout.slice(stdout.indexOf("[")));
    return (parsed[0]?.results ?? []) as T[];
  };

  const port = await freePort();
  const inspector = await freePort();
  const args = ["dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", String(inspector), "--persist-to", persist, "--show-interactive-dev-session=false"];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  // Its own process group, so stopping it also ends the workerd it starts.
  const child: ChildProcess = spawn(wrangler, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, name);
    } catch {
      // already gone
    }
  };
  let log = "";
  child.stdout?.on("data", (d) => (log += d));
  child.stderr?.on("data", (d) => (log += d));

  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`wrangler dev exited early:\n${log}`);
    try {
      const res = await fetch(`${url}/dashboard/api/auth/session`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      signal("SIGKILL");
      throw new Error(`wrangler dev did not start in time:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }

  return {
    url,
    sql,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        signal("SIGTERM");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        signal("SIGKILL");
      }
      rmSync(persist, { recursive: true, force: true });
    },
  };
}

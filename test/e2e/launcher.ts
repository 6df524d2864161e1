// `npm start` (scripts/start.mjs) as a terminal runs it, for the e2e tests of the launcher: its
// own process group, output collected, the banner awaited, Ctrl-C, and a check that every
// process it started is gone.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";

const root = join(import.meta.dirname, "..", "..");

// Every live descendant of a process (children of the launcher run in their own process groups).
export function descendants(pid: number): number[] {
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

export const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
};

export interface Launch {
  pid: number;
  output(): string;
  // Resolves when the banner is printed; throws with the output if the launcher exited first.
  running(): Promise<void>;
  // The value printed after a banner label, e.g. "API key".
  banner(label: string): string;
  // Ctrl-C: SIGINT to the process group; resolves with the exit code.
  interrupt(): Promise<number | null>;
  // Kills whatever is left (for `finally`).
  kill(): void;
}

export function launchNpmStart(env: Record<string, string>): Launch {
  const launcher = spawn(process.execPath, [join(root, "scripts", "start.mjs")], {
    cwd: root,
    detached: true, // its own process group, like a shell's foreground job
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let out = "";
  launcher.stdout!.on("data", (d) => (out += d));
  launcher.stderr!.on("data", (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => launcher.once("exit", (code) => resolve(code)));
  return {
    pid: launcher.pid!,
    output: () => out,
    async running() {
      await expect.poll(() => out.includes("The platform is running") || launcher.exitCode !== null, { timeout: 150_000, interval: 500 }).toBe(true);
      expect(launcher.exitCode, out).toBeNull();
    },
    banner(label: string) {
      const match = new RegExp(`^\\s*${label}\\s+(\\S+)`, "m").exec(out);
      if (!match) throw new Error(`no "${label}" in the banner:\n${out}`);
      return match[1]!;
    },
    interrupt() {
      process.kill(-launcher.pid!, "SIGINT");
      return exited;
    },
    kill() {
      if (launcher.exitCode !== null) return;
      // A launcher killed outright cannot stop its children (they have their own groups).
      for (const pid of descendants(launcher.pid!)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      process.kill(-launcher.pid!, "SIGKILL");
    },
  };
}

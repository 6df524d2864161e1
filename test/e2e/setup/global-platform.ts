// Starts the platform once for the e2e suite: two GPU workers (embedded checkpoint, CPU) and
// the gateway, all state (D1, Durable Objects, disk caches, logs) under one temp folder.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
// @ts-expect-error plain ESM module without types
import { startPlatform } from "../../../scripts/lib/platform.mjs";

export interface PlatformInfo {
  baseURL: string;
  key: string;
  account: string;
  persistTo: string;
  workers: { id: string; url: string; port: number; pid: number; secret: string }[];
}

declare module "vitest" {
  export interface ProvidedContext {
    platform: PlatformInfo;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), "e2e-platform-"));
  const started = Date.now();
  const platform = await startPlatform({
    workers: 2,
    persistTo: join(dir, "state"),
    dataDir: dir,
    logs: true,
    accountName: "e2e",
    keyName: "e2e",
    workerThreads: 1, // two workers on a 2-core machine
    // Long enough that a client hanging up mid-thought always leaves before the thinking ends.
    maxReasoningTokens: 8192,
    frozenGateway: true, // other work on the sources must not reload the gateway mid-suite
    log: (text: string) => console.log(`[e2e] ${text}`),
  });
  console.log(`[e2e] platform up in ${Math.round((Date.now() - started) / 1000)}s at ${platform.baseURL} (logs in ${platform.logDir})`);
  project.provide("platform", {
    baseURL: platform.baseURL,
    key: platform.key,
    account: platform.account,
    persistTo: platform.persistTo,
    workers: platform.workers.map((w: any) => ({ id: w.id, url: w.url, port: w.port, pid: w.pid, secret: w.secret })),
  });
  return async () => {
    await platform.stop();
    if (process.env.E2E_KEEP_LOGS) {
      console.log(`[e2e] logs kept in ${platform.logDir}`);
      return;
    }
    if (process.exitCode) {
      for (const name of readdirSync(platform.logDir)) {
        const text = readFileSync(join(platform.logDir, name), "utf8").split("\n").filter((l) => !l.includes("GET /health"));
        console.log(`--- ${name} (last lines) ---\n${text.slice(-40).join("\n")}`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

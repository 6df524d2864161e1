// `npm test`: every test suite of the platform, TypeScript and Python, in one run.
// Each suite runs even if an earlier one failed; the exit code says whether all passed.
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { ensureNodeDeps, repoRoot } from "./ensure-deps.mjs";
import { ensurePythonEnv, workerDir } from "./python-env.mjs";

ensureNodeDeps();
const python = ensurePythonEnv();
const bin = (name) => join(repoRoot, "node_modules", ".bin", name);

const suites = [
  { name: "typecheck (tsc, strict)", cmd: bin("tsc"), args: ["--noEmit", "-p", "."], cwd: repoRoot },
  { name: "gateway (workerd)", cmd: bin("vitest"), args: ["run", "--config", "vitest.config.ts"], cwd: repoRoot },
  { name: "dashboard (browser)", cmd: bin("vitest"), args: ["run", "--config", "vitest.browser.config.ts"], cwd: repoRoot },
  { name: "operator CLI (node)", cmd: bin("vitest"), args: ["run", "--config", "vitest.node.config.ts"], cwd: repoRoot },
  { name: "gpu-worker (pytest)", cmd: python, args: ["-m", "pytest", "-q"], cwd: workerDir },
  { name: "end to end (real workers, OpenAI SDKs)", cmd: bin("vitest"), args: ["run", "--config", "vitest.e2e.config.ts"], cwd: repoRoot },
];

const only = process.env.TEST_SUITES?.split(",");
const results = [];
for (const suite of suites) {
  if (only && !only.some((o) => suite.name.startsWith(o))) continue;
  console.log(`\n=== ${suite.name} ===`);
  const started = Date.now();
  const run = spawnSync(suite.cmd, suite.args, { cwd: suite.cwd, stdio: "inherit", env: { ...process.env, FORCE_COLOR: "0" } });
  results.push({ name: suite.name, ok: run.status === 0, seconds: Math.round((Date.now() - started) / 1000) });
}

console.log("\n=== summary ===");
for (const r of results) console.log(`${r.ok ? "PASS" : "FAIL"}  ${r.name}  (${r.seconds}s)`);
process.exit(results.every((r) => r.ok) ? 0 : 1);

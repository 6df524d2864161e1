// Creates gpu-worker/.venv from the pinned requirements on first need (and again when the
// requirements change), so the README's two commands remain the only set-up.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { repoRoot } from "./ensure-deps.mjs";

export const workerDir = join(repoRoot, "gpu-worker");
export const venvPython = join(workerDir, ".venv", "bin", "python");

export function ensurePythonEnv() {
  const requirements = join(workerDir, "requirements.txt");
  const hash = createHash("sha256").update(readFileSync(requirements)).digest("hex");
  const stamp = join(workerDir, ".venv", ".requirements-sha256");
  if (existsSync(venvPython) && existsSync(stamp) && readFileSync(stamp, "utf8") === hash) return venvPython;

  const python = process.env.PYTHON ?? "python3";
  if (!existsSync(venvPython)) {
    console.log("[setup] creating the GPU worker's Python environment (gpu-worker/.venv)...");
    execFileSync(python, ["-m", "venv", join(workerDir, ".venv")], { stdio: "inherit" });
  }
  console.log("[setup] installing pinned Python packages (torch is large; this takes a few minutes once)...");
  execFileSync(venvPython, ["-m", "pip", "install", "--disable-pip-version-check", "-r", requirements], { stdio: "inherit" });
  writeFileSync(stamp, hash);
  return venvPython;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) ensurePythonEnv();

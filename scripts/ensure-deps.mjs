// Installs the npm dependencies when they are missing or older than the lockfile, so that
// `npm start` and `npm test` work as the very first command on a fresh clone.
import { execSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

export function ensureNodeDeps() {
  // wrangler.toml serves the dashboard's build output; the folder must exist before workerd starts.
  mkdirSync(join(repoRoot, "apps", "dashboard", "dist"), { recursive: true });
  const marker = join(repoRoot, "node_modules", ".package-lock.json");
  const lock = join(repoRoot, "package-lock.json");
  const fresh = existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs);
  if (fresh) return;
  console.log("[setup] installing npm dependencies (first run)...");
  execSync("npm install --no-audit --no-fund", { cwd: repoRoot, stdio: "inherit" });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) ensureNodeDeps();

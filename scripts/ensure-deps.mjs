// Installs the npm dependencies when they are missing or older than the lockfile, so that
// `npm start` and `npm test` work as the very first command on a fresh clone.
import { execSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

export function ensureNodeDeps() {
  // wrangler.toml serves the dashboard's build output; the folder must exist before workerd starts.
  mkdirSync(join(repoRoot, "apps", "dashboard", "dist"), { recursive: true });
  const marker = join(repoRoot, "node_modules", ".package-lock.json");
  const lock = join(repoRoot, "package-lock.json");
  const fresh = existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs);
  if (!fresh) {
    console.log("[setup] installing npm dependencies (first run)...");
    execSync("npm install --no-audit --no-fund", { cwd: repoRoot, stdio: "inherit" });
  }
  buildDashboard();
}

// Builds the dashboard SPA into apps/dashboard/dist/dashboard when a source is newer than the build.
export function buildDashboard() {
  const app = join(repoRoot, "apps", "dashboard");
  const built = join(app, "dist", "dashboard", "index.html");
  const newest = (path) =>
    statSync(path).isDirectory() ? Math.max(0, ...readdirSync(path).map((name) => newest(join(path, name)))) : statSync(path).mtimeMs;
  const sources = ["src", "index.html", "vite.config.ts", "package.json"].map((p) => join(app, p)).filter(existsSync);
  if (existsSync(built) && Math.max(...sources.map(newest)) <= statSync(built).mtimeMs) return;
  console.log("[setup] building the dashboard (apps/dashboard)...");
  execSync(`"${join(repoRoot, "node_modules", ".bin", "vite")}" build --logLevel warn`, { cwd: app, stdio: "inherit" });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) ensureNodeDeps();

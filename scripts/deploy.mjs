// `npm run deploy [-- <wrangler deploy options>]`: the gateway onto Cloudflare. Builds the
// dashboard, applies the D1 migrations to the remote database, then `wrangler deploy`; the
// options (e.g. `--env production`, `--dry-run`) go to wrangler. A dry run needs no account:
// it skips the remote migrations and only builds and checks what would be uploaded.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { ensureNodeDeps, repoRoot } from "./ensure-deps.mjs";

const PLACEHOLDER_DATABASE_ID = "00000000-0000-0000-0000-000000000000";
const args = process.argv.slice(2);
const dryRun = args.includes("--dry-run");
const envIndex = args.findIndex((a) => a === "--env" || a === "-e" || a.startsWith("--env="));
const envName = envIndex < 0 ? undefined : args[envIndex].includes("=") ? args[envIndex].split("=")[1] : args[envIndex + 1];
const envArgs = envName ? ["--env", envName] : [];
const log = (text) => console.log(`[deploy] ${text}`);
const wrangler = join(repoRoot, "node_modules", ".bin", "wrangler");
const run = (cmd, cmdArgs, cwd = repoRoot) =>
  execFileSync(cmd, cmdArgs, { cwd, stdio: "inherit", env: { ...process.env, WRANGLER_SEND_METRICS: "false" } });

async function main() {
  ensureNodeDeps();
  const { unstable_readConfig } = await import("wrangler");
  const config = unstable_readConfig({ config: join(repoRoot, "wrangler.toml"), env: envName });
  const database = config.d1_databases.find((d) => d.binding === "DB");
  if (!database) throw new Error(`wrangler.toml declares no D1 binding DB${envName ? ` under [env.${envName}]` : ""}`);
  if (!dryRun && database.database_id === PLACEHOLDER_DATABASE_ID) {
    throw new Error(
      `the D1 database id${envName ? ` of [env.${envName}]` : ""} in wrangler.toml is still the placeholder: run \`npx wrangler d1 create ${database.database_name}\` and put its id there`,
    );
  }

  // ensureNodeDeps() built the dashboard into apps/dashboard/dist if it was missing or older
  // than its sources: wrangler uploads that folder as the static assets.

  if (dryRun) log("dry run: skipping `wrangler d1 migrations apply DB --remote` (it needs a Cloudflare account)");
  else {
    log("applying D1 migrations to the remote database...");
    run(wrangler, ["d1", "migrations", "apply", "DB", "--remote", ...envArgs]);
  }

  log(`wrangler deploy ${args.join(" ")}`);
  run(wrangler, ["deploy", ...args]);
  if (dryRun) log("dry run complete: nothing was uploaded");
}

main().catch((err) => {
  console.error(`[deploy] ${err.message}`);
  process.exit(1);
});

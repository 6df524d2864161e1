// Runs SQL against the gateway's D1 database through wrangler: the local one that `npm start`
// and `wrangler dev` use, or the deployed one with --remote.
import { execFileSync } from "node:child_process";
import { join } from "node:path";

const repoRoot = join(import.meta.dirname, "..", "..");
const wrangler = join(repoRoot, "node_modules", ".bin", "wrangler");

export interface D1Target {
  remote: boolean;
  persistTo?: string;
  // A wrangler environment (e.g. "production"): its database binding is used.
  env?: string;
}

export function sqlString(value: string | null | undefined): string {
  if (value === null || value === undefined) return "NULL";
  return `'${value.replaceAll("'", "''")}'`;
}

export function sqlInt(value: number | null | undefined): string {
  if (value === null || value === undefined) return "NULL";
  if (!Number.isSafeInteger(value)) throw new Error(`not an integer: ${value}`);
  return String(value);
}

// `wrangler d1 execute --command` takes no bound parameters: a statement's `?` placeholders are
// filled with its values as SQL literals, in order.
export function withValues(sql: string, values: ReadonlyArray<string | number | null>): string {
  let next = 0;
  const filled = sql.replace(/\?/g, () => {
    const value = values[next++];
    return typeof value === "number" ? sqlInt(value) : sqlString(value);
  });
  if (next !== values.length) throw new Error(`${values.length} values for ${next} placeholders`);
  return filled;
}

function locationArgs(target: D1Target): string[] {
  if (target.remote) return ["--remote", ...(target.env ? ["--env", target.env] : [])];
  return ["--local", ...(target.persistTo ? ["--persist-to", target.persistTo] : [])];
}

export function applyMigrations(target: D1Target): void {
  execFileSync(wrangler, ["d1", "migrations", "apply", "DB", ...locationArgs(target)], {
    cwd: repoRoot,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, CI: "1", CLOUDFLARE_CF_FETCH_ENABLED: "false" }, // no interactive confirmation, no Request.cf download
  });
}

export function query<T = Record<string, unknown>>(target: D1Target, sql: string): T[] {
  const out = execFileSync(wrangler, ["d1", "execute", "DB", ...locationArgs(target), "--json", "--command", sql], {
    cwd: repoRoot,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, CLOUDFLARE_CF_FETCH_ENABLED: "false" }, // no Request.cf download (offline noise)
  });
  const parsed = JSON.parse(out) as { results: T[] }[];
  // wrangler reports SQL errors as {"error": {...}} with a non-zero exit, which throws above.
  return parsed.flatMap((p) => p.results ?? []);
}

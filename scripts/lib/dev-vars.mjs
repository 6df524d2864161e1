// .dev.vars: the secrets of the local gateway (wrangler dev reads it next to wrangler.toml).
// WORKER_SECRET_KEY encrypts GPU worker secrets in D1; the gateway and the operator CLI must
// share it, so the first local run generates one here (never committed: .gitignore).
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export const devVarsPath = join(import.meta.dirname, "..", "..", ".dev.vars");

export function readDevVars(path = devVarsPath) {
  if (!existsSync(path)) return {};
  const vars = {};
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const match = /^\s*([A-Z0-9_]+)\s*=\s*"?([^"]*)"?\s*$/.exec(line);
    if (match) vars[match[1]] = match[2];
  }
  return vars;
}

// The local WORKER_SECRET_KEY, created in .dev.vars if it is not there yet.
export function ensureLocalWorkerSecretKey(path = devVarsPath) {
  const existing = readDevVars(path).WORKER_SECRET_KEY;
  if (existing) return existing;
  const key = randomBytes(32).toString("base64");
  const text = existsSync(path) ? readFileSync(path, "utf8") : "";
  appendFileSync(path, `${text && !text.endsWith("\n") ? "\n" : ""}WORKER_SECRET_KEY="${key}"\n`);
  return key;
}

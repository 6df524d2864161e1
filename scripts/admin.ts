// The operator CLI: `npm run admin -- <command> [--flags]`. Works on the local D1 database
// (the one `npm start` serves) or, with --remote, on the deployed one.
import { userInfo } from "node:os";
import { parseArgs } from "node:util";
import { generateApiKey, randomHex } from "../workers/gateway/src/auth/api-keys";
import { KEY_STATE_MAX_AGE_MS } from "../workers/gateway/src/auth/key-state";
import { formatAmount, parseAmount } from "../workers/gateway/src/billing/money";
import { auditValues, INSERT_AUDIT_ENTRY } from "../workers/gateway/src/dashboard/audit-entry";
import { newResetToken, RESET_TOKEN_TTL_MS, resetLink } from "../workers/gateway/src/dashboard/password-reset";
import { isSealed, sealWorkerSecret } from "../workers/gateway/src/upstream/worker-secret";
import { checkWorkerUrl } from "../workers/gateway/src/upstream/worker-url";
import { ensureLocalWorkerSecretKey } from "./lib/dev-vars.mjs";
import { deadSettlements, reconcile } from "./lib/settlements";
import { applyMigrations, query, sqlInt, sqlString, withValues, type D1Target } from "./lib/local-d1";

const HELP = `Usage: npm run admin -- <command> [options]
  Add --remote (and --env production) for the deployed database; then WORKER_SECRET_KEY must be
  set in the environment to the value of the wrangler secret (worker secrets are encrypted with it).

  migrate                                    apply the D1 migrations (other commands do it on a fresh database)
  create-account --name NAME                 create an account; prints its id
  list-accounts                              accounts with their credit totals and limits
  grant --account ID --amount USD [--expires-days N] [--note TEXT]
                                             add granted balance (spent first; may expire)
  top-up --account ID --amount USD [--note TEXT]
                                             add topped-up balance (never expires)
  create-key --account ID [--name NAME]      create an API key; the key is printed once
  list-keys --account ID                     keys with prefix, last four, created, last used
  revoke-key --key ID                        revoke a key; it fails on the next request
  set-limits --account ID [--key ID] [--rpm N] [--tpm N] [--concurrency N]
                                             rate limits ("default" clears one)
  add-worker --url URL --secret S --models a,b [--id ID]
                                             register a GPU worker (or update it by id); --remote
                                             needs an https:// URL with a hostname
  list-workers / remove-worker --id ID
  encrypt-worker-secrets                     encrypt worker secrets still stored in plaintext
  dead-settlements                           settlements the settlement queue gave up on (served
                                             requests whose money has not arrived)
  reconcile [--since-hours H] [--grace-seconds S]
                                             requests the GPU workers served (their GET /v1/usage)
                                             with no usage row: served but never settled
                                             (default: the last 24 hours, finished over 120 s ago)
  set-role --email EMAIL --role admin|user   dashboard role of a user
  reset-password --email EMAIL [--base-url URL]
                                             print a one-time password reset link (valid 1 hour;
                                             no mail service is configured, so hand it over yourself)

Every change is recorded in the audit log (dashboard: Audit log) as cli:<your OS user>.
`;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    remote: { type: "boolean", default: false },
    env: { type: "string" },
    "persist-to": { type: "string" },
    json: { type: "boolean", default: false },
    name: { type: "string" },
    account: { type: "string" },
    amount: { type: "string" },
    "expires-days": { type: "string" },
    note: { type: "string" },
    key: { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
    concurrency: { type: "string" },
    url: { type: "string" },
    secret: { type: "string" },
    models: { type: "string" },
    id: { type: "string" },
    email: { type: "string" },
    role: { type: "string" },
    "since-hours": { type: "string" },
    "grace-seconds": { type: "string" },
    "base-url": { type: "string" },
    help: { type: "boolean", default: false },
  },
});

const target: D1Target = { remote: values.remote ?? false, persistTo: values["persist-to"], env: values.env };

// The key that encrypts worker secrets: the deployed gateway's wrangler secret (given in the
// environment), or locally the one in .dev.vars that `npm start`'s gateway reads.
function workerSecretKey(): string {
  const key = process.env.WORKER_SECRET_KEY;
  if (key) return key;
  if (target.remote) throw new Error("set WORKER_SECRET_KEY to the gateway's secret of that name (wrangler secret put WORKER_SECRET_KEY)");
  return ensureLocalWorkerSecretKey();
}

function need(name: keyof typeof values): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new Error(`--${name} is required`);
  return value;
}

function limitValue(name: "rpm" | "tpm" | "concurrency"): string | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  if (raw === "default") return "NULL";
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer or "default"`);
  return String(n);
}

// A running gateway holds each account's keys and limits in memory and reads D1 again within
// KEY_STATE_MAX_AGE_MS: waiting that long means the change is in force when the command returns.
function waitUntilInForce(): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, KEY_STATE_MAX_AGE_MS + 100);
}

// The audit log entry of a change, as a statement run right after it: written only when the
// change touched a row.
const ACTOR = `cli:${userInfo().username}`;
function audited(sql: string, action: string, targetId: string | null, details: Record<string, unknown> = {}): string {
  const entry = withValues(INSERT_AUDIT_ENTRY, auditValues({ actor: ACTOR, actorUserId: null, action, target: targetId, details }));
  return `${sql};\n${entry} WHERE changes() > 0`;
}

function print(data: unknown, text: () => string): void {
  console.log(values.json ? JSON.stringify(data) : text());
}

function accountExists(id: string): void {
  if (query(target, `SELECT id FROM accounts WHERE id = ${sqlString(id)}`).length === 0) throw new Error(`no account ${id}`);
}

export async function createAccount(name: string): Promise<string> {
  const id = `acct_${randomHex(8)}`;
  query(target, audited(`INSERT INTO accounts (id, name, cache_namespace) VALUES (${sqlString(id)}, ${sqlString(name)}, ${sqlString(randomHex(16))})`, "create-account", id, { name }));
  return id;
}

function credit(kind: "granted" | "topped_up"): void {
  const account = need("account");
  accountExists(account);
  const micros = parseAmount(need("amount"));
  if (micros <= 0) throw new Error("--amount must be positive");
  const days = values["expires-days"] ? Number(values["expires-days"]) : null;
  if (days !== null && (!Number.isFinite(days) || days <= 0)) throw new Error("--expires-days must be a positive number");
  const expires = days ? Date.now() + Math.round(days * 86_400_000) : null;
  const note = values.note ?? `cli ${kind}`;
  query(
    target,
    audited(
      `INSERT INTO balance_credits (account_id, kind, amount_micros, expires_at, note) VALUES (${sqlString(account)}, '${kind}', ${sqlInt(micros)}, ${sqlInt(expires)}, ${sqlString(note)})`,
      kind === "granted" ? "grant" : "top-up",
      account,
      { amount_micros: micros, expires_at: expires, note },
    ),
  );
  print({ account, kind, amount: formatAmount(micros) }, () => `${kind === "granted" ? "granted" : "topped up"} ${formatAmount(micros)} USD to ${account}`);
}

async function createKey(): Promise<void> {
  const account = need("account");
  accountExists(account);
  const k = await generateApiKey();
  const id = `key_${randomHex(8)}`;
  query(
    target,
    audited(
      `INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4) VALUES (${sqlString(id)}, ${sqlString(account)}, ${sqlString(values.name ?? "cli")}, ${sqlString(k.keyHash)}, ${sqlString(k.displayPrefix)}, ${sqlString(k.last4)})`,
      "create-key",
      account,
      { key_id: id, name: values.name ?? "cli" },
    ),
  );
  print({ id, account, key: k.key }, () => `key id ${id}\napi key ${k.key}   (shown once; store it now)`);
}

const commands: Record<string, () => void | Promise<void>> = {
  migrate: () => {
    applyMigrations(target);
    print({ migrated: true }, () => "migrations applied");
  },
  "create-account": async () => {
    const id = await createAccount(need("name"));
    print({ id }, () => id);
  },
  "list-accounts": () => {
    const rows = query(
      target,
      `SELECT a.id, a.name, a.rpm_limit, a.tpm_limit, a.concurrency_limit,
              COALESCE((SELECT SUM(amount_micros) FROM balance_credits c WHERE c.account_id = a.id AND c.kind = 'granted'), 0) AS granted,
              COALESCE((SELECT SUM(amount_micros) FROM balance_credits c WHERE c.account_id = a.id AND c.kind = 'topped_up'), 0) AS topped_up
         FROM accounts a ORDER BY a.created_at`,
    );
    print(rows, () =>
      rows
        .map((r: any) => `${r.id}  ${r.name}  credits granted ${formatAmount(r.granted)} topped-up ${formatAmount(r.topped_up)}  rpm ${r.rpm_limit ?? "default"} tpm ${r.tpm_limit ?? "default"} concurrency ${r.concurrency_limit ?? "default"}`)
        .join("\n"),
    );
  },
  grant: () => credit("granted"),
  "top-up": () => credit("topped_up"),
  "create-key": createKey,
  "list-keys": () => {
    const rows = query(
      target,
      `SELECT id, name, display_prefix, last4, created_at, last_used_at, revoked_at FROM api_keys WHERE account_id = ${sqlString(need("account"))} ORDER BY created_at`,
    );
    const when = (ms: unknown) => (typeof ms === "number" ? new Date(ms).toISOString() : "never");
    print(rows, () =>
      rows.map((r: any) => `${r.id}  ${r.display_prefix}...${r.last4}  ${r.name}  created ${when(r.created_at)}  last used ${when(r.last_used_at)}${r.revoked_at ? "  REVOKED" : ""}`).join("\n"),
    );
  },
  "revoke-key": () => {
    const id = need("key");
    const rows = query(target, audited(`UPDATE api_keys SET revoked_at = ${Date.now()} WHERE id = ${sqlString(id)} AND revoked_at IS NULL RETURNING id`, "revoke-key", id));
    if (rows.length === 0) throw new Error(`no active key ${id}`);
    waitUntilInForce();
    print({ revoked: id }, () => `revoked ${id}`);
  },
  "set-limits": () => {
    const sets = (["rpm", "tpm", "concurrency"] as const)
      .map((name) => [name === "concurrency" ? "concurrency_limit" : `${name}_limit`, limitValue(name)] as const)
      .filter(([, v]) => v !== undefined)
      .map(([column, v]) => `${column} = ${v}`);
    if (sets.length === 0) throw new Error("give at least one of --rpm, --tpm, --concurrency");
    const table = values.key ? "api_keys" : "accounts";
    const id = values.key ?? need("account");
    const action = values.key ? "set-key-limits" : "set-account-limits";
    const rows = query(target, audited(`UPDATE ${table} SET ${sets.join(", ")} WHERE id = ${sqlString(id)} RETURNING id`, action, id, { set: sets }));
    if (rows.length === 0) throw new Error(`no ${values.key ? "key" : "account"} ${id}`);
    waitUntilInForce();
    print({ id, set: sets }, () => `limits of ${id}: ${sets.join(", ")}`);
  },
  "add-worker": async () => {
    // The local database belongs to `npm start` (ENVIRONMENT=development); a remote one to a
    // deployed gateway, which can only reach https:// hostnames.
    const url = checkWorkerUrl(need("url"), { development: !target.remote });
    const models = need("models").split(",").map((m) => m.trim()).filter(Boolean);
    const id = values.id ?? `gpu_${randomHex(6)}`;
    const secret = await sealWorkerSecret(need("secret"), workerSecretKey());
    query(
      target,
      audited(
        `INSERT INTO gpu_workers (id, url, secret, models) VALUES (${sqlString(id)}, ${sqlString(url)}, ${sqlString(secret)}, ${sqlString(JSON.stringify(models))})
       ON CONFLICT(id) DO UPDATE SET url = excluded.url, secret = excluded.secret, models = excluded.models, enabled = 1`,
        "add-worker",
        id,
        { url, models },
      ),
    );
    print({ id, url, models }, () => `worker ${id} at ${url} serving ${models.join(", ")}`);
  },
  "encrypt-worker-secrets": async () => {
    const rows = query<{ id: string; secret: string }>(target, "SELECT id, secret FROM gpu_workers").filter((r) => !isSealed(r.secret));
    const key = workerSecretKey();
    for (const row of rows) {
      const secret = await sealWorkerSecret(row.secret, key);
      query(target, `UPDATE gpu_workers SET secret = ${sqlString(secret)} WHERE id = ${sqlString(row.id)} AND secret = ${sqlString(row.secret)}`);
    }
    print({ encrypted: rows.map((r) => r.id) }, () => `encrypted the secrets of ${rows.length} worker(s)`);
  },
  "dead-settlements": () => {
    const rows = deadSettlements(target).map((r) => ({ ...r, settlement: JSON.parse(r.settlement) }));
    print(rows, () =>
      rows.length === 0
        ? "no dead settlements"
        : rows.map((r) => `${r.request_id}  account ${r.account_id}  dead since ${new Date(r.dead_at).toISOString()} after ${r.attempts} tries${r.resettled_at ? "  (resettled)" : ""}`).join("\n"),
    );
  },
  reconcile: async () => {
    const hours = Number(values["since-hours"] ?? 24);
    const graceSeconds = Number(values["grace-seconds"] ?? 120);
    if (!(hours > 0) || !(graceSeconds >= 0)) throw new Error("--since-hours must be positive and --grace-seconds not negative");
    const report = await reconcile(target, { since: Date.now() - Math.round(hours * 3_600_000), graceMs: graceSeconds * 1000, workerKey: workerSecretKey });
    print(report, () =>
      [
        ...report.workers.map((w) => `worker ${w.id}: ${w.error ? `NOT READ (${w.error})` : `${w.served} requests served`}`),
        `${report.served} served, ${report.settled} settled, ${report.unsettled.length} served but not settled${report.unsettled.length ? ":" : ""}`,
        ...report.unsettled.map(
          (u) => `  ${u.request_id}  ${u.worker}  ${u.model}  ${u.prompt_tokens}+${u.completion_tokens} tokens  ${new Date(u.finished_at).toISOString()}${u.dead_lettered ? "  (dead-lettered)" : ""}`,
        ),
      ].join("\n"),
    );
  },
  "list-workers": () => {
    const rows = query(target, "SELECT id, url, models, enabled FROM gpu_workers ORDER BY id");
    print(rows, () => rows.map((r: any) => `${r.id}  ${r.url}  ${r.models}${r.enabled ? "" : "  (disabled)"}`).join("\n"));
  },
  "remove-worker": () => {
    const id = need("id");
    const rows = query(target, audited(`DELETE FROM gpu_workers WHERE id = ${sqlString(id)} RETURNING id`, "remove-worker", id));
    if (rows.length === 0) throw new Error(`no worker ${id}`);
    print({ removed: id }, () => `removed ${id}`);
  },
  "set-role": () => {
    const role = need("role");
    if (role !== "admin" && role !== "user") throw new Error("--role must be admin or user");
    const email = need("email").toLowerCase();
    const rows = query(target, audited(`UPDATE users SET role = '${role}' WHERE email = ${sqlString(email)} RETURNING id`, "set-role", email, { role }));
    if (rows.length === 0) throw new Error(`no user ${values.email}`);
    print({ email: values.email, role }, () => `${values.email} is now ${role}`);
  },
  "reset-password": async () => {
    const email = need("email").toLowerCase();
    const user = query<{ id: string }>(target, `SELECT id FROM users WHERE email = ${sqlString(email)}`)[0];
    if (!user) throw new Error(`no user ${email}`);
    const { token, tokenHash } = await newResetToken();
    const now = Date.now();
    const expiresAt = now + RESET_TOKEN_TTL_MS;
    // A new link spends the older ones.
    query(
      target,
      audited(
        `UPDATE password_resets SET used_at = ${now} WHERE user_id = ${sqlString(user.id)} AND used_at IS NULL;
INSERT INTO password_resets (token_hash, user_id, expires_at) VALUES (${sqlString(tokenHash)}, ${sqlString(user.id)}, ${expiresAt})`,
        "reset-password",
        email,
        { expires_at: expiresAt },
      ),
    );
    const link = resetLink(values["base-url"] ?? "http://localhost:8787", token);
    const expires = new Date(expiresAt).toISOString();
    print({ email, token, link, expires_at: expires }, () => `password reset link for ${email} (one use, until ${expires}):\n${link}`);
  },
};

async function main(): Promise<void> {
  const command = positionals[0];
  if (!command || values.help || !commands[command]) {
    console.log(HELP);
    process.exit(command && !values.help ? 2 : 0);
  }
  try {
    await commands[command]!();
  } catch (err) {
    // A fresh local database has no tables yet: apply the migrations once and try again.
    const output = err as Error & { stdout?: string; stderr?: string };
    if (target.remote || !/no such table/.test(`${output.stdout ?? ""}${output.stderr ?? ""}`)) throw err;
    applyMigrations(target);
    await commands[command]!();
  }
}

main().catch((err: Error) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});

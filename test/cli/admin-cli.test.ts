// The operator CLI (`npm run admin -- ...`) against a throwaway local D1 database.
import { execFileSync, spawnSync } from "node:child_process";
import { createDecipheriv, createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { query } from "../../scripts/lib/local-d1";

const repoRoot = join(import.meta.dirname, "..", "..");
const persistTo = mkdtempSync(join(tmpdir(), "admin-cli-"));
const target = { remote: false, persistTo };
// The key that seals worker secrets (otherwise the CLI would use, or create, the repo's .dev.vars).
const WORKER_SECRET_KEY = Buffer.alloc(32, 9).toString("base64");
process.env.WORKER_SECRET_KEY = WORKER_SECRET_KEY;

function admin(...args: string[]): any {
  const out = execFileSync(join(repoRoot, "node_modules", ".bin", "tsx"), ["scripts/admin.ts", ...args, "--persist-to", persistTo, "--json"], {
    cwd: repoRoot,
    encoding: "utf8",
  });
  return JSON.parse(out.trim().split("\n").pop()!);
}

function adminFails(...args: string[]): string {
  const run = spawnSync(join(repoRoot, "node_modules", ".bin", "tsx"), ["scripts/admin.ts", ...args, "--persist-to", persistTo], { cwd: repoRoot, encoding: "utf8" });
  expect(run.status).not.toBe(0);
  return run.stderr;
}

afterAll(() => rmSync(persistTo, { recursive: true, force: true }));

// AES-GCM open, as the gateway does it (upstream/worker-secret.ts), with Node's crypto.
function openSealed(stored: string): string {
  const [iv, data] = stored.slice("enc:v1:".length).split(":").map((b) => Buffer.from(b!, "base64"));
  const decipher = createDecipheriv("aes-256-gcm", Buffer.from(WORKER_SECRET_KEY, "base64"), iv!);
  decipher.setAuthTag(data!.subarray(data!.length - 16));
  return Buffer.concat([decipher.update(data!.subarray(0, data!.length - 16)), decipher.final()]).toString("utf8");
}

describe("operator CLI", () => {
  it("creates an account, credits it, creates, lists and revokes keys, and sets limits", () => {
    const { id: account } = admin("create-account", "--name", "acme");
    expect(account).toMatch(/^acct_[0-9a-f]{16}$/);

    expect(admin("grant", "--account", account, "--amount", "10", "--expires-days", "30")).toEqual({ account, kind: "granted", amount: "10.00" });
    expect(admin("top-up", "--account", account, "--amount", "2.5")).toEqual({ account, kind: "topped_up", amount: "2.50" });
    const credits = query<{ kind: string; amount_micros: number; expires_at: number | null }>(target, `SELECT kind, amount_micros, expires_at FROM balance_credits WHERE account_id = '${account}' ORDER BY id`);
    expect(credits.map((c) => [c.kind, c.amount_micros])).toEqual([["granted", 10_000_000], ["topped_up", 2_500_000]]);
    expect(credits[0]!.expires_at).toBeGreaterThan(Date.now());

    const key = admin("create-key", "--account", account, "--name", "ci");
    expect(key.key).toMatch(/^sk-[0-9a-f]{32}$/);
    const stored = query<{ key_hash: string; display_prefix: string; last4: string }>(target, `SELECT key_hash, display_prefix, last4 FROM api_keys WHERE id = '${key.id}'`)[0]!;
    expect(stored).toEqual({ key_hash: createHash("sha256").update(key.key).digest("hex"), display_prefix: key.key.slice(0, 7), last4: key.key.slice(-4) });

    const listed = admin("list-keys", "--account", account);
    expect(listed).toHaveLength(1);
    expect(JSON.stringify(listed)).not.toContain(key.key);

    admin("set-limits", "--account", account, "--rpm", "60", "--tpm", "100000", "--concurrency", "4");
    admin("set-limits", "--account", account, "--key", key.id, "--rpm", "10");
    expect(query(target, `SELECT rpm_limit, tpm_limit, concurrency_limit FROM accounts WHERE id = '${account}'`)[0]).toEqual({ rpm_limit: 60, tpm_limit: 100000, concurrency_limit: 4 });
    expect(query(target, `SELECT rpm_limit FROM api_keys WHERE id = '${key.id}'`)[0]).toEqual({ rpm_limit: 10 });
    admin("set-limits", "--account", account, "--rpm", "default");
    expect(query(target, `SELECT rpm_limit FROM accounts WHERE id = '${account}'`)[0]).toEqual({ rpm_limit: null });

    expect(admin("revoke-key", "--key", key.id)).toEqual({ revoked: key.id });
    expect(query<{ revoked_at: number }>(target, `SELECT revoked_at FROM api_keys WHERE id = '${key.id}'`)[0]!.revoked_at).toBeGreaterThan(0);
  }, 120_000);

  it("registers GPU workers idempotently by id", () => {
    admin("add-worker", "--id", "w1", "--url", "http://10.0.0.5:8000/", "--secret", "s1", "--models", "deepseek-chat,deepseek-reasoner");
    admin("add-worker", "--id", "w1", "--url", "http://10.0.0.6:8000", "--secret", "s2", "--models", "deepseek-chat");
    const rows = query<{ id: string; url: string; secret: string; models: string }>(target, "SELECT id, url, secret, models FROM gpu_workers");
    expect(rows).toEqual([{ id: "w1", url: "http://10.0.0.6:8000", secret: expect.stringMatching(/^enc:v1:/), models: '["deepseek-chat"]' }]);
    expect(openSealed(rows[0]!.secret)).toBe("s2");
    expect(admin("remove-worker", "--id", "w1")).toEqual({ removed: "w1" });
  }, 60_000);

  it("refuses bad input with a clear message and changes nothing", () => {
    const { id: account } = admin("create-account", "--name", "strict");
    expect(adminFails("grant", "--account", "acct_missing", "--amount", "5")).toContain("no account acct_missing");
    expect(adminFails("grant", "--account", account, "--amount", "5.1234567")).toContain("not an amount");
    expect(adminFails("top-up", "--account", account, "--amount=-3")).toContain("not an amount");
    expect(adminFails("create-key")).toContain("--account is required");
    expect(adminFails("revoke-key", "--key", "key_nope")).toContain("no active key key_nope");
    expect(adminFails("set-limits", "--account", account, "--rpm", "0")).toContain("positive integer");
    expect(adminFails("add-worker", "--url", "not a url", "--secret", "s", "--models", "m")).toMatch(/is not a URL/);
    expect(query(target, `SELECT COUNT(*) AS n FROM balance_credits WHERE account_id = '${account}'`)[0]).toEqual({ n: 0 });
  }, 120_000);

  it("refuses plain http and IP-literal worker URLs for a deployed gateway (--remote), before touching any database", () => {
    expect(adminFails("add-worker", "--remote", "--url", "http://gpu.example.com", "--secret", "s", "--models", "m")).toMatch(
      /error: worker URL must be https:\/\/ outside local development/,
    );
    expect(adminFails("add-worker", "--remote", "--url", "https://203.0.113.7:8100", "--secret", "s", "--models", "m")).toMatch(
      /error: worker URL needs a hostname, not 203\.0\.113\.7, outside local development: deployed Workers cannot fetch IP addresses \(Cloudflare error 1003\)/,
    );
  });

  it("encrypt-worker-secrets seals the plaintext rows of an older database and leaves sealed ones alone", () => {
    admin("add-worker", "--id", "sealed", "--url", "http://127.0.0.1:8001", "--secret", "already-sealed", "--models", "deepseek-chat");
    query(target, `INSERT INTO gpu_workers (id, url, secret, models) VALUES ('legacy', 'http://127.0.0.1:8002', 'legacy-plain-secret', '["deepseek-chat"]')`);
    const before = query<{ secret: string }>(target, "SELECT secret FROM gpu_workers WHERE id = 'sealed'")[0]!.secret;
    expect(admin("encrypt-worker-secrets")).toEqual({ encrypted: ["legacy"] });
    const rows = Object.fromEntries(query<{ id: string; secret: string }>(target, "SELECT id, secret FROM gpu_workers").map((r) => [r.id, r.secret]));
    expect(rows.sealed).toBe(before);
    expect(rows.legacy).toMatch(/^enc:v1:/);
    expect(openSealed(rows.legacy!)).toBe("legacy-plain-secret");
    expect(admin("encrypt-worker-secrets")).toEqual({ encrypted: [] });
  });
});

// The operator CLI's password reset links and its audit log entries, against a throwaway local D1.
import { execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { query } from "../../scripts/lib/local-d1";

const repoRoot = join(import.meta.dirname, "..", "..");
const persistTo = mkdtempSync(join(tmpdir(), "admin-accounts-"));
const target = { remote: false, persistTo };
const tsx = join(repoRoot, "node_modules", ".bin", "tsx");

function admin(...args: string[]): any {
  const out = execFileSync(tsx, ["scripts/admin.ts", ...args, "--persist-to", persistTo, "--json"], { cwd: repoRoot, encoding: "utf8" });
  return JSON.parse(out.trim().split("\n").pop()!);
}

afterAll(() => rmSync(persistTo, { recursive: true, force: true }));

describe("operator CLI: accounts", () => {
  it("reset-password prints a one-time link; D1 keeps only the token's hash; a new link spends the old one", () => {
    admin("migrate");
    query(target, "INSERT INTO users (id, email, password_hash, password_salt, password_iterations) VALUES ('usr_cli', 'pat@example.com', 'x', 'y', 100000)");

    const first = admin("reset-password", "--email", "Pat@Example.com", "--base-url", "https://gw.example.com/");
    expect(first.token).toMatch(/^[0-9a-f]{64}$/);
    expect(first.link).toBe(`https://gw.example.com/dashboard/reset-password?token=${first.token}`);
    const rows = query<{ token_hash: string; expires_at: number; used_at: number | null }>(target, "SELECT token_hash, expires_at, used_at FROM password_resets WHERE user_id = 'usr_cli'");
    expect(rows).toEqual([{ token_hash: createHash("sha256").update(first.token).digest("hex"), expires_at: Date.parse(first.expires_at), used_at: null }]);
    expect(rows[0]!.expires_at - Date.now()).toBeGreaterThan(55 * 60_000);
    expect(rows[0]!.expires_at - Date.now()).toBeLessThanOrEqual(60 * 60_000);

    const second = admin("reset-password", "--email", "pat@example.com");
    expect(second.link).toBe(`http://localhost:8787/dashboard/reset-password?token=${second.token}`);
    const pending = query<{ token_hash: string }>(target, "SELECT token_hash FROM password_resets WHERE user_id = 'usr_cli' AND used_at IS NULL");
    expect(pending).toEqual([{ token_hash: createHash("sha256").update(second.token).digest("hex") }]);

    const unknown = spawnSync(tsx, ["scripts/admin.ts", "reset-password", "--email", "nobody@example.com", "--persist-to", persistTo], { cwd: repoRoot, encoding: "utf8" });
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toContain("no user nobody@example.com");
  }, 120_000);

  it("records its changes in the audit log as cli:<OS user>, and nothing for a change that failed", () => {
    const { id: account } = admin("create-account", "--name", "audited");
    admin("grant", "--account", account, "--amount", "3", "--note", "promo's? offer");
    const revoke = spawnSync(tsx, ["scripts/admin.ts", "revoke-key", "--key", "key_missing", "--persist-to", persistTo], { cwd: repoRoot, encoding: "utf8" });
    expect(revoke.status).not.toBe(0);

    const log = query<{ actor: string; actor_user_id: null; action: string; target: string; details: string; created_at: number }>(
      target,
      "SELECT actor, actor_user_id, action, target, details, created_at FROM audit_log ORDER BY id",
    );
    const actor = `cli:${userInfo().username}`;
    expect(log.map((e) => [e.actor, e.action, e.target])).toEqual([
      [actor, "reset-password", "pat@example.com"],
      [actor, "reset-password", "pat@example.com"],
      [actor, "create-account", account],
      [actor, "grant", account],
    ]);
    expect(JSON.parse(log[3]!.details)).toMatchObject({ amount_micros: 3_000_000, note: "promo's? offer" });
    expect(log.every((e) => e.actor_user_id === null && Date.now() - e.created_at < 120_000)).toBe(true);
    expect(log.map((e) => e.details).join("")).not.toMatch(/[0-9a-f]{64}/); // no reset token in the log
  }, 120_000);
});

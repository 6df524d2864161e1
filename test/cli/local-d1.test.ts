// The CLI's statements through wrangler: bound values become SQL literals, and the audit log
// entry is the dashboard's own INSERT (dashboard/audit-entry.ts) with those literals.
import { describe, expect, it } from "vitest";
import { auditValues, INSERT_AUDIT_ENTRY } from "../../workers/gateway/src/dashboard/audit-entry";
import { withValues } from "../../scripts/lib/local-d1";

describe("withValues", () => {
  it("fills placeholders in order: strings quoted and escaped, integers bare, null as NULL", () => {
    expect(withValues("SELECT ?, ?, ?", ["it's ?", 42, null])).toBe("SELECT 'it''s ?', 42, NULL");
  });

  it("refuses a count that does not match, and a number that is not an integer", () => {
    expect(() => withValues("SELECT ?, ?", ["a"])).toThrow("1 values for 2 placeholders");
    expect(() => withValues("SELECT ?", ["a", "b"])).toThrow("2 values for 1 placeholders");
    expect(() => withValues("SELECT ?", [1.5])).toThrow("not an integer");
  });

  it("writes the audit entry with every column the dashboard's entries have", () => {
    const entry = { actor: "cli:ops", actorUserId: null, action: "grant", target: "acct_1", details: { note: "promo" } };
    expect(withValues(INSERT_AUDIT_ENTRY, auditValues(entry, 1_700_000_000_000))).toBe(
      `INSERT INTO audit_log (actor, actor_user_id, action, target, details, created_at) SELECT 'cli:ops', NULL, 'grant', 'acct_1', '{"note":"promo"}', 1700000000000`,
    );
  });
});

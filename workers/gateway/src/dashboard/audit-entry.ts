// One audit log entry and the one INSERT that writes it, for both writers: the dashboard's admin
// middleware (audit-log.ts, bound on D1) and the operator CLI (scripts/admin.ts, through
// wrangler, which appends a condition so that only a change that touched a row is recorded).
export interface AuditEntry {
  actor: string;
  actorUserId: string | null;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
}

// INSERT ... SELECT (not VALUES), so a writer may append a WHERE clause.
export const INSERT_AUDIT_ENTRY = "INSERT INTO audit_log (actor, actor_user_id, action, target, details, created_at) SELECT ?, ?, ?, ?, ?, ?";

// The statement's values, in its placeholders' order.
export function auditValues(entry: AuditEntry, at = Date.now()): [string, string | null, string, string | null, string, number] {
  return [entry.actor, entry.actorUserId, entry.action, entry.target, JSON.stringify(entry.details), at];
}

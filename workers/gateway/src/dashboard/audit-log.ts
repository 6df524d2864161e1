// The audit log of operator actions: who did what, when, with which parameters. Every change an
// admin makes through the dashboard's admin API is recorded by the middleware below once it has
// succeeded (secrets in its body are masked); the operator CLI records its own (scripts/admin.ts)
// with the same statement (audit-entry.ts).
import type { Context } from "hono";
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import { auditValues, INSERT_AUDIT_ENTRY, type AuditEntry } from "./audit-entry";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";

const PAGE_DEFAULT = 50;
const PAGE_MAX = 200;
const SECRET_FIELD = /secret|password|token/i;

// Names of the admin API's changes, by method and route.
const ACTIONS: Record<string, string> = {
  "POST /accounts/:id/grants": "grant",
  "PUT /accounts/:id/limits": "set-account-limits",
  "PUT /keys/:id/limits": "set-key-limits",
  "POST /workers": "add-worker",
  "PATCH /workers/:id": "update-worker",
  "DELETE /workers/:id": "remove-worker",
  "PATCH /models/:id": "update-model",
  "POST /dead-settlements/:id/resettle": "resettle",
};

function masked(body: unknown): unknown {
  if (!body || typeof body !== "object" || Array.isArray(body)) return body;
  return Object.fromEntries(Object.entries(body).map(([k, v]) => [k, SECRET_FIELD.test(k) ? "••••" : v]));
}

async function requestBody(copy: Request | null): Promise<unknown> {
  if (!copy) return undefined;
  try {
    return JSON.parse(await copy.text());
  } catch {
    return undefined;
  }
}

// The path of the matched admin route, relative to /admin (e.g. "/accounts/:id/grants").
function adminRoute(c: Context<DashboardAppEnv>): string {
  return c.req.routePath.replace(/^.*\/admin(?=\/)/, "");
}

export const auditAdminChanges = createMiddleware<DashboardAppEnv>(async (c, next) => {
  if (c.req.method === "GET" || c.req.method === "HEAD") return next();
  const copy = c.req.raw.body ? c.req.raw.clone() : null;
  await next();
  if (c.error || c.res.status >= 400) return;
  const route = adminRoute(c);
  const session = c.get("session");
  const params = c.req.param() as Record<string, string>;
  const entry: AuditEntry = {
    actor: session.email,
    actorUserId: session.userId,
    action: ACTIONS[`${c.req.method} ${route}`] ?? `${c.req.method} ${route}`,
    target: params.id ?? null,
    details: { ...(Object.keys(params).length > 0 ? { params } : {}), body: masked(await requestBody(copy)) },
  };
  await c.env.DB.prepare(INSERT_AUDIT_ENTRY).bind(...auditValues(entry)).run();
});

interface AuditRow {
  id: number;
  actor: string;
  action: string;
  target: string | null;
  details: string;
  created_at: number;
}

export const auditRoutes = new Hono<DashboardAppEnv>().get("/audit", async (c) => {
  const limit = Math.min(PAGE_MAX, Math.max(1, Number(c.req.query("limit") ?? PAGE_DEFAULT) || PAGE_DEFAULT));
  const before = c.req.query("before");
  if (before !== undefined && !/^\d+$/.test(before)) throw invalidInput("before: an entry id", "before");
  const { results } = await c.env.DB.prepare(
    `SELECT id, actor, action, target, details, created_at FROM audit_log WHERE ? IS NULL OR id < ? ORDER BY id DESC LIMIT ?`,
  )
    .bind(before ?? null, before ? Number(before) : null, limit + 1)
    .all<AuditRow>();
  const page = results.slice(0, limit);
  return c.json({
    data: page.map((r) => ({ ...r, details: JSON.parse(r.details) as unknown })),
    next_before: results.length > limit ? page[page.length - 1]!.id : null,
  });
});

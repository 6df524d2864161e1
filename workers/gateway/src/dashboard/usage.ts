// Usage of the signed-in account: daily roll-ups (charts by model and by key, cache-hit rate)
// and the per-request table with filters, paged by a (completed_at, request_id) cursor.
import { Hono } from "hono";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";
import { dayBounds, parseRange } from "./usage-range";
import type { DailyRow } from "./wire-types";

export type { DailyRow };

const PAGE_DEFAULT = 50;
const PAGE_MAX = 500;

export interface RecordFilters {
  model?: string;
  keyId?: string;
  status?: string;
}

export function recordFilters(query: (name: string) => string | undefined): RecordFilters {
  const status = query("status") || undefined;
  if (status && !["ok", "aborted", "failed"].includes(status)) throw invalidInput("status: one of ok, aborted, failed", "status");
  return { model: query("model") || undefined, keyId: query("key_id") || undefined, status };
}

// WHERE clause shared by the table and the per-request export; values are always bound.
export function recordWhere(accountId: string, from: number, to: number, f: RecordFilters): { sql: string; args: unknown[] } {
  let sql = "r.account_id = ? AND r.completed_at >= ? AND r.completed_at < ?";
  const args: unknown[] = [accountId, from, to];
  if (f.model) (sql += " AND r.model = ?"), args.push(f.model);
  if (f.keyId) (sql += " AND r.key_id = ?"), args.push(f.keyId);
  if (f.status) (sql += " AND r.status = ?"), args.push(f.status);
  return { sql, args };
}

export const RECORD_COLUMNS = `r.request_id, r.completed_at, r.started_at, r.model, r.endpoint, r.key_id, k.name AS key_name,
  r.status, r.price_tier, r.cache_hit_tokens, r.cache_miss_tokens, r.completion_tokens, r.reasoning_tokens, r.cost_micros`;
export const RECORD_FROM = "usage_records r LEFT JOIN api_keys k ON k.id = r.key_id AND k.account_id = r.account_id";

export interface RecordRow {
  request_id: string;
  completed_at: number;
  started_at: number;
  model: string;
  endpoint: string;
  key_id: string | null;
  key_name: string | null;
  status: string;
  price_tier: string;
  cache_hit_tokens: number;
  cache_miss_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cost_micros: number;
}


export const DAILY_COLUMNS = `d.day, d.model, d.key_id, k.name AS key_name, d.requests, d.cache_hit_tokens, d.cache_miss_tokens,
  d.completion_tokens, d.reasoning_tokens, d.cost_micros`;
export const DAILY_FROM = "usage_daily d LEFT JOIN api_keys k ON k.id = d.key_id AND k.account_id = d.account_id";

export const usageRoutes = new Hono<DashboardAppEnv>()
  .get("/daily", async (c) => {
    const range = parseRange(c);
    const { firstDay, lastDay } = dayBounds(range);
    if (range.to - range.from > 400 * 24 * 3600_000) throw invalidInput("Range too long for charts (at most 400 days); use the export", "from");
    const { results } = await c.env.DB.prepare(
      `SELECT ${DAILY_COLUMNS} FROM ${DAILY_FROM} WHERE d.account_id = ? AND d.day >= ? AND d.day <= ? ORDER BY d.day, d.model, d.key_id`,
    )
      .bind(c.get("session").accountId, firstDay, lastDay)
      .all<DailyRow>();
    return c.json({ first_day: firstDay, last_day: lastDay, data: results });
  })

  .get("/records", async (c) => {
    const range = parseRange(c);
    const filters = recordFilters((n) => c.req.query(n));
    const limit = Math.min(PAGE_MAX, Math.max(1, Number(c.req.query("limit") ?? PAGE_DEFAULT) || PAGE_DEFAULT));
    const where = recordWhere(c.get("session").accountId, range.from, range.to, filters);
    // Cursor "<completed_at>:<request_id>" of the last row seen; pages go newest first.
    const cursor = c.req.query("cursor");
    if (cursor) {
      const match = /^(\d+):(.+)$/.exec(cursor);
      if (!match) throw invalidInput("cursor: malformed", "cursor");
      where.sql += " AND (r.completed_at < ? OR (r.completed_at = ? AND r.request_id < ?))";
      where.args.push(Number(match[1]), Number(match[1]), match[2]);
    }
    const { results } = await c.env.DB.prepare(
      `SELECT ${RECORD_COLUMNS} FROM ${RECORD_FROM} WHERE ${where.sql} ORDER BY r.completed_at DESC, r.request_id DESC LIMIT ?`,
    )
      .bind(...where.args, limit + 1)
      .all<RecordRow>();
    const page = results.slice(0, limit);
    const last = page[page.length - 1];
    const next = results.length > limit && last ? `${last.completed_at}:${last.request_id}` : null;
    return c.json({ data: page, next_cursor: next });
  });

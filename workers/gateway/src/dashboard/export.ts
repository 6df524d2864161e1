// Usage export: CSV or JSON Lines, per request or aggregated by day, model and key, for a
// date range. Per-request rows come from D1 and, past the retention window, from the R2 archive.
//
// One response is one part: as many rows as PART_MAX_ROWS and a budget of D1 queries and R2
// reads (EXPORT_BUDGET, well under a Worker invocation's limit) allow. When the range holds more,
// the response says where the rest is: a `Link: <...>; rel="next"` header and `x-next-cursor`
// (the same query with `cursor=`). Nothing is cut off silently; the last part has no next link.
// Every part is a complete file (CSV parts repeat the header row).
import { Hono } from "hono";
import type { RetentionEnv } from "../usage-archive/env";
import { OperationBudget } from "../usage-archive/budget";
import { formatMicros } from "./format";
import { csvLine } from "./csv";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";
import { type RequestCursor, RequestsReader } from "./export-requests";
import { DAILY_COLUMNS, DAILY_FROM, type DailyRow, type RecordRow, recordFilters } from "./usage";
import { dayBounds, parseRange } from "./usage-range";

export const EXPORT_BUDGET = 30;
export const PART_MAX_ROWS = 20_000;
const DAILY_PAGE_ROWS = 2_000;

type Row = Record<string, unknown>;

interface ExportPart<C> {
  rows: Row[];
  next: C | null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

const REQUEST_COLUMNS = [
  "request_id", "completed_at", "started_at", "model", "endpoint", "key_id", "key_name", "status", "price_tier",
  "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens", "completion_tokens", "reasoning_tokens", "cost_usd", "cost_micros",
];

function requestRow(r: RecordRow): Row {
  return {
    request_id: r.request_id,
    completed_at: iso(r.completed_at),
    started_at: iso(r.started_at),
    model: r.model,
    endpoint: r.endpoint,
    key_id: r.key_id,
    key_name: r.key_name,
    status: r.status,
    price_tier: r.price_tier,
    prompt_tokens: r.cache_hit_tokens + r.cache_miss_tokens,
    cache_hit_tokens: r.cache_hit_tokens,
    cache_miss_tokens: r.cache_miss_tokens,
    completion_tokens: r.completion_tokens,
    reasoning_tokens: r.reasoning_tokens,
    cost_usd: formatMicros(r.cost_micros),
    cost_micros: r.cost_micros,
  };
}

const DAILY_COLUMNS_OUT = [
  "day", "model", "key_id", "key_name", "requests", "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens",
  "completion_tokens", "reasoning_tokens", "cost_usd", "cost_micros",
];

interface DailyCursor {
  day: string;
  model: string;
  keyId: string;
}

async function dailyPart(db: D1Database, accountId: string, firstDay: string, lastDay: string, after: DailyCursor | null, budget: OperationBudget): Promise<ExportPart<DailyCursor>> {
  const rows: Row[] = [];
  let cursor = after;
  for (;;) {
    if (rows.length >= PART_MAX_ROWS || !budget.take(1)) return { rows, next: cursor };
    let sql = `SELECT ${DAILY_COLUMNS} FROM ${DAILY_FROM} WHERE d.account_id = ? AND d.day >= ? AND d.day <= ?`;
    const args: unknown[] = [accountId, firstDay, lastDay];
    if (cursor) {
      sql += " AND (d.day, d.model, d.key_id) > (?, ?, ?)";
      args.push(cursor.day, cursor.model, cursor.keyId);
    }
    const limit = Math.min(DAILY_PAGE_ROWS, PART_MAX_ROWS - rows.length);
    const { results } = await db.prepare(`${sql} ORDER BY d.day, d.model, d.key_id LIMIT ?`).bind(...args, limit).all<DailyRow>();
    for (const d of results) {
      rows.push({
        day: d.day,
        model: d.model,
        key_id: d.key_id,
        key_name: d.key_name,
        requests: d.requests,
        prompt_tokens: d.cache_hit_tokens + d.cache_miss_tokens,
        cache_hit_tokens: d.cache_hit_tokens,
        cache_miss_tokens: d.cache_miss_tokens,
        completion_tokens: d.completion_tokens,
        reasoning_tokens: d.reasoning_tokens,
        cost_usd: formatMicros(d.cost_micros),
        cost_micros: d.cost_micros,
      });
    }
    const last = results[results.length - 1];
    if (last) cursor = { day: last.day, model: last.model, keyId: last.key_id };
    if (results.length < limit) return { rows, next: null };
  }
}

// Cursors travel in URLs as base64url JSON; anything else is a 400.
function encodeCursor(cursor: unknown): string {
  const bytes = new TextEncoder().encode(JSON.stringify(cursor));
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeCursor<C>(raw: string | undefined, valid: (c: any) => boolean): C | null {
  if (!raw) return null;
  let cursor: unknown;
  try {
    const binary = atob(raw.replaceAll("-", "+").replaceAll("_", "/"));
    cursor = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(Uint8Array.from(binary, (ch) => ch.charCodeAt(0))));
  } catch {
    throw invalidInput("cursor: malformed", "cursor");
  }
  if (!cursor || typeof cursor !== "object" || !valid(cursor)) throw invalidInput("cursor: malformed", "cursor");
  return cursor as C;
}

const isRequestCursor = (c: any) =>
  Number.isSafeInteger(c.completedAt) && typeof c.requestId === "string" && (c.inclusive === undefined || typeof c.inclusive === "boolean");
const isDailyCursor = (c: any) => typeof c.day === "string" && typeof c.model === "string" && typeof c.keyId === "string";

function body(columns: string[], rows: Row[], format: "csv" | "jsonl"): string {
  if (format === "jsonl") return rows.map((row) => `${JSON.stringify(row)}\n`).join("");
  return csvLine(columns) + rows.map((row) => csvLine(columns.map((c) => row[c]))).join("");
}

export const exportRoutes = new Hono<DashboardAppEnv>().get("/", async (c) => {
  const format = c.req.query("format") ?? "csv";
  if (format !== "csv" && format !== "jsonl") throw invalidInput("format: csv or jsonl", "format");
  const group = c.req.query("group") ?? "request";
  if (group !== "request" && group !== "day") throw invalidInput("group: request or day", "group");
  const range = parseRange(c);
  const accountId = c.get("session").accountId;
  const { firstDay, lastDay } = dayBounds(range);
  const budget = new OperationBudget(EXPORT_BUDGET);

  let part: ExportPart<unknown>;
  let columns: string[];
  if (group === "request") {
    const after = decodeCursor<RequestCursor>(c.req.query("cursor"), isRequestCursor);
    const bucket = (c.env as RetentionEnv).USAGE_ARCHIVE;
    const reader = new RequestsReader(c.env.DB, bucket, { accountId, from: range.from, to: range.to, filters: recordFilters((n) => c.req.query(n)) }, budget);
    const read = await reader.part(after, PART_MAX_ROWS);
    part = { rows: read.rows.map(requestRow), next: read.next };
    columns = REQUEST_COLUMNS;
  } else {
    const after = decodeCursor<DailyCursor>(c.req.query("cursor"), isDailyCursor);
    part = await dailyPart(c.env.DB, accountId, firstDay, lastDay, after, budget);
    columns = DAILY_COLUMNS_OUT;
  }

  const headers: Record<string, string> = {
    "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson; charset=utf-8",
    "content-disposition": `attachment; filename="usage-${group === "request" ? "requests" : "daily"}-${firstDay}-to-${lastDay}.${format}"`,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  };
  if (part.next) {
    const cursor = encodeCursor(part.next);
    const next = new URL(c.req.url);
    next.searchParams.set("cursor", cursor);
    headers.link = `<${next.pathname}${next.search}>; rel="next"`;
    headers["x-next-cursor"] = cursor;
  }
  return new Response(body(columns, part.rows, format), { headers });
});

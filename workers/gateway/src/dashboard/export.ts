// Usage export: CSV or JSON Lines, per request or aggregated by day, model and key, for a
// date range. The body is a ReadableStream that pulls one keyset page at a time from D1, so a
// large range is never held in memory.
import { Hono } from "hono";
import { formatMicros } from "./format";
import { csvLine } from "./csv";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";
import { DAILY_COLUMNS, DAILY_FROM, type DailyRow, RECORD_COLUMNS, RECORD_FROM, type RecordRow, recordFilters, recordWhere } from "./usage";
import { dayBounds, parseRange } from "./usage-range";

const PAGE_SIZE = 500;

type Row = Record<string, unknown>;

interface ExportSource {
  columns: string[];
  nextPage(): Promise<Row[]>;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function requestSource(db: D1Database, accountId: string, from: number, to: number, filters: ReturnType<typeof recordFilters>): ExportSource {
  let after: { completedAt: number; requestId: string } | null = null;
  return {
    columns: [
      "request_id", "completed_at", "started_at", "model", "endpoint", "key_id", "key_name", "status", "price_tier",
      "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens", "completion_tokens", "reasoning_tokens", "cost_usd", "cost_micros",
    ],
    async nextPage() {
      const where = recordWhere(accountId, from, to, filters);
      if (after) {
        where.sql += " AND (r.completed_at > ? OR (r.completed_at = ? AND r.request_id > ?))";
        where.args.push(after.completedAt, after.completedAt, after.requestId);
      }
      const { results } = await db
        .prepare(`SELECT ${RECORD_COLUMNS} FROM ${RECORD_FROM} WHERE ${where.sql} ORDER BY r.completed_at, r.request_id LIMIT ?`)
        .bind(...where.args, PAGE_SIZE)
        .all<RecordRow>();
      const last = results[results.length - 1];
      if (last) after = { completedAt: last.completed_at, requestId: last.request_id };
      return results.map((r) => ({
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
      }));
    },
  };
}

function dailySource(db: D1Database, accountId: string, firstDay: string, lastDay: string): ExportSource {
  let after: { day: string; model: string; keyId: string } | null = null;
  return {
    columns: [
      "day", "model", "key_id", "key_name", "requests", "prompt_tokens", "cache_hit_tokens", "cache_miss_tokens",
      "completion_tokens", "reasoning_tokens", "cost_usd", "cost_micros",
    ],
    async nextPage() {
      let sql = `SELECT ${DAILY_COLUMNS} FROM ${DAILY_FROM} WHERE d.account_id = ? AND d.day >= ? AND d.day <= ?`;
      const args: unknown[] = [accountId, firstDay, lastDay];
      if (after) {
        sql += " AND (d.day, d.model, d.key_id) > (?, ?, ?)";
        args.push(after.day, after.model, after.keyId);
      }
      const { results } = await db
        .prepare(`${sql} ORDER BY d.day, d.model, d.key_id LIMIT ?`)
        .bind(...args, PAGE_SIZE)
        .all<DailyRow>();
      const last = results[results.length - 1];
      if (last) after = { day: last.day, model: last.model, keyId: last.key_id };
      return results.map((d) => ({
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
      }));
    },
  };
}

export function exportStream(source: ExportSource, format: "csv" | "jsonl"): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let headerSent = false;
  let done = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (done) return;
      if (format === "csv" && !headerSent) {
        headerSent = true;
        controller.enqueue(encoder.encode(csvLine(source.columns)));
        return;
      }
      const rows = await source.nextPage();
      if (rows.length > 0) {
        const text = rows
          .map((row) => (format === "csv" ? csvLine(source.columns.map((c) => row[c])) : `${JSON.stringify(row)}\n`))
          .join("");
        controller.enqueue(encoder.encode(text));
      }
      if (rows.length < PAGE_SIZE) {
        done = true;
        controller.close();
      }
    },
  });
}

export const exportRoutes = new Hono<DashboardAppEnv>().get("/", (c) => {
  const format = c.req.query("format") ?? "csv";
  if (format !== "csv" && format !== "jsonl") throw invalidInput("format: csv or jsonl", "format");
  const group = c.req.query("group") ?? "request";
  if (group !== "request" && group !== "day") throw invalidInput("group: request or day", "group");
  const range = parseRange(c);
  const accountId = c.get("session").accountId;
  const source =
    group === "request"
      ? requestSource(c.env.DB, accountId, range.from, range.to, recordFilters((n) => c.req.query(n)))
      : (() => {
          const { firstDay, lastDay } = dayBounds(range);
          return dailySource(c.env.DB, accountId, firstDay, lastDay);
        })();
  const filename = `usage-${group === "request" ? "requests" : "daily"}-${dayBounds(range).firstDay}-to-${dayBounds(range).lastDay}.${format}`;
  return new Response(exportStream(source, format), {
    headers: {
      "content-type": format === "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson; charset=utf-8",
      "content-disposition": `attachment; filename="${filename}"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
  });
});

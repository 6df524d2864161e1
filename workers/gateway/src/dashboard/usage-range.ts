// Time ranges of usage queries. The browser turns the dates a person picks in their own time
// zone into UTC instants; the API takes `from` (inclusive) and `to` (exclusive) as epoch
// milliseconds or ISO 8601 strings. Daily roll-ups are kept per UTC day.
import type { Context } from "hono";
import type { DashboardAppEnv } from "./env";
import { DAY_MS, utcDay } from "../usage-archive/layout";
import { invalidInput } from "./errors";

export const DEFAULT_RANGE_MS = 30 * DAY_MS;

export interface TimeRange {
  from: number;
  to: number;
}

function instant(raw: string | undefined, name: string): number | null {
  if (raw === undefined || raw === "") return null;
  const value = /^\d+$/.test(raw) ? Number(raw) : Date.parse(raw);
  if (!Number.isFinite(value)) throw invalidInput(`${name}: not a time (use epoch milliseconds or ISO 8601)`, name);
  return value;
}

export function parseRange(c: Context<DashboardAppEnv>): TimeRange {
  const to = instant(c.req.query("to"), "to") ?? Date.now() + 1;
  const from = instant(c.req.query("from"), "from") ?? to - DEFAULT_RANGE_MS;
  if (from >= to) throw invalidInput("from must be before to", "from");
  return { from, to };
}

// The UTC days a range touches, as inclusive YYYY-MM-DD bounds.
export function dayBounds(range: TimeRange): { firstDay: string; lastDay: string } {
  return { firstDay: utcDay(range.from), lastDay: utcDay(range.to - 1) };
}

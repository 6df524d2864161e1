// The per-request rows of an export, across D1 (the retention window) and the R2 archive (older
// days), in keyset order (completed_at, request_id), as far as one invocation's budget allows.
// A day with archived parts is read from R2 and merged with whatever of it is still in D1 (a run
// of the archiver in progress, a late row), each request once; other days are paged from D1.
// A day with more parts than the budget reads is read in turns: the parts' first and last keys
// (their R2 metadata) tell which rows are complete with the parts read so far.
import { OperationBudget } from "../usage-archive/budget";
import { listArchivedDays, listDayParts, mergeDay, readPart } from "../usage-archive/day-parts";
import { type ArchivedRow, compareRows, DAY_MS, dayStart, type RowKey, utcDay } from "../usage-archive/layout";
import { RECORD_COLUMNS, RECORD_FROM, type RecordFilters, type RecordRow, recordWhere } from "./usage";

const D1_PAGE_ROWS = 2_000;
// Sorts after every request id: a cursor that stands at the very end of an instant.
const AFTER_ALL_IDS = "\uffff";

export interface RequestCursor {
  completedAt: number;
  requestId: string;
  // The row at the cursor itself is still to come (a turn of an archived day stopped before it).
  inclusive?: boolean;
}

export interface RequestQuery {
  accountId: string;
  from: number;
  to: number;
  filters: RecordFilters;
}

export interface RequestsPart {
  rows: RecordRow[];
  // Where the next part starts; null when the range is exhausted.
  next: RequestCursor | null;
}


function isAfter(row: RowKey, cursor: RequestCursor | null): boolean {
  if (!cursor) return true;
  const order = compareRows(row, { completed_at: cursor.completedAt, request_id: cursor.requestId });
  return order > 0 || (order === 0 && cursor.inclusive === true);
}

function matches(row: ArchivedRow, q: RequestQuery): boolean {
  const f = q.filters;
  return (
    row.completed_at >= q.from &&
    row.completed_at < q.to &&
    (!f.model || row.model === f.model) &&
    (!f.keyId || row.key_id === f.keyId) &&
    (!f.status || row.status === f.status)
  );
}

function archivedRecord(row: ArchivedRow, keyNames: Map<string, string>): RecordRow {
  const keyId = (row.key_id as string | null) ?? null;
  return {
    request_id: row.request_id,
    completed_at: row.completed_at,
    started_at: row.started_at as number,
    model: row.model as string,
    endpoint: row.endpoint as string,
    key_id: keyId,
    key_name: keyId ? (keyNames.get(keyId) ?? null) : null,
    status: row.status as string,
    price_tier: row.price_tier as string,
    cache_hit_tokens: row.cache_hit_tokens as number,
    cache_miss_tokens: row.cache_miss_tokens as number,
    completion_tokens: row.completion_tokens as number,
    reasoning_tokens: row.reasoning_tokens as number,
    cost_micros: row.cost_micros as number,
  };
}

export class RequestsReader {
  private keyNames: Map<string, string> | null = null;

  constructor(
    private readonly db: D1Database,
    private readonly bucket: R2Bucket | undefined,
    private readonly q: RequestQuery,
    private readonly budget: OperationBudget,
  ) {}

  // At most maxRows rows after `after`; stops early (with a cursor) when the budget runs short.
  async part(after: RequestCursor | null, maxRows: number): Promise<RequestsPart> {
    const rows: RecordRow[] = [];
    let cursor = after;
    const firstDay = utcDay(Math.max(this.q.from, cursor?.completedAt ?? this.q.from));
    const lastDay = utcDay(this.q.to - 1);
    let archivedDays: string[] = [];
    if (this.bucket) {
      if (!this.budget.take(1)) return { rows, next: cursor };
      // A day the cursor has passed whole is not read again.
      archivedDays = (await listArchivedDays(this.bucket, this.q.accountId, firstDay, lastDay)).filter((day) =>
        isAfter({ completed_at: dayStart(day) + DAY_MS - 1, request_id: AFTER_ALL_IDS }, cursor),
      );
    }
    for (const day of [...archivedDays, null]) {
      // D1 up to the next archived day (or the end of the range).
      const segmentEnd = day === null ? this.q.to : Math.min(this.q.to, dayStart(day));
      for (;;) {
        if ((cursor?.completedAt ?? this.q.from) >= segmentEnd) break;
        if (rows.length >= maxRows || !this.budget.take(1)) return { rows, next: cursor };
        const page = await this.d1Page(cursor, segmentEnd, Math.min(D1_PAGE_ROWS, maxRows - rows.length));
        rows.push(...page.rows);
        if (page.rows.length > 0) cursor = { completedAt: page.rows[page.rows.length - 1]!.completed_at, requestId: page.rows[page.rows.length - 1]!.request_id };
        if (!page.more) break;
      }
      if (day === null) return { rows, next: null };

      if (rows.length >= maxRows) return { rows, next: cursor };
      const archived = await this.archivedDay(day, cursor);
      if (!archived) return { rows, next: cursor };
      const wanted = archived.rows.slice(0, maxRows - rows.length);
      rows.push(...wanted);
      const lastRow = wanted[wanted.length - 1];
      if (wanted.length < archived.rows.length) return { rows, next: { completedAt: lastRow!.completed_at, requestId: lastRow!.request_id } };
      if (archived.until) return { rows, next: { completedAt: archived.until.completed_at, requestId: archived.until.request_id, inclusive: true } };
      cursor = { completedAt: dayStart(day) + DAY_MS - 1, requestId: AFTER_ALL_IDS };
    }
    return { rows, next: null };
  }

  private async d1Page(after: RequestCursor | null, end: number, limit: number): Promise<{ rows: RecordRow[]; more: boolean }> {
    const where = recordWhere(this.q.accountId, this.q.from, end, this.q.filters);
    if (after) {
      where.sql += ` AND (r.completed_at > ? OR (r.completed_at = ? AND r.request_id ${after.inclusive ? ">=" : ">"} ?))`;
      where.args.push(after.completedAt, after.completedAt, after.requestId);
    }
    const { results } = await this.db
      .prepare(`SELECT ${RECORD_COLUMNS} FROM ${RECORD_FROM} WHERE ${where.sql} ORDER BY r.completed_at, r.request_id LIMIT ?`)
      .bind(...where.args, limit)
      .all<RecordRow>();
    return { rows: results, more: results.length === limit };
  }

  // The rows after the cursor of a day with archived parts: its parts merged with its rows still
  // in D1. When the budget leaves parts unread, only rows before the first unread part's first
  // row (`until`) are known complete and returned. Null when the budget cannot read one part.
  private async archivedDay(day: string, cursor: RequestCursor | null): Promise<{ rows: RecordRow[]; until: RowKey | null } | null> {
    const bucket = this.bucket!;
    if (!this.budget.take(3)) return null; // list, D1 rows of the day, key names
    const pending = (await listDayParts(bucket, this.q.accountId, day)).parts
      .filter((p) => isAfter(p.last, cursor))
      .sort((a, b) => compareRows(a.first, b.first));
    let readable = 0;
    while (readable < pending.length && this.budget.take(1)) readable++;
    if (readable === 0 && pending.length > 0) return null;
    const until = pending[readable]?.first ?? null;
    // Parts without their key metadata cannot be read in turns: say so rather than loop.
    if (until && cursor && compareRows(until, { completed_at: cursor.completedAt, request_id: cursor.requestId }) <= 0) throw new Error(`usage archive: ${day} of ${this.q.accountId} has parts without key metadata`);
    const keys = pending.slice(0, readable).map((p) => p.key);
    const start = Math.max(this.q.from, dayStart(day));
    const end = Math.min(this.q.to, dayStart(day) + DAY_MS);
    const { results: inD1 } = await this.db
      .prepare(`SELECT * FROM usage_records WHERE account_id = ? AND completed_at >= ? AND completed_at < ?`)
      .bind(this.q.accountId, start, end)
      .all<ArchivedRow>();
    const parts = await Promise.all(keys.map((key) => readPart(bucket, key)));
    if (!this.keyNames) {
      const { results } = await this.db.prepare("SELECT id, name FROM api_keys WHERE account_id = ?").bind(this.q.accountId).all<{ id: string; name: string }>();
      this.keyNames = new Map(results.map((k) => [k.id, k.name]));
    }
    const keyNames = this.keyNames;
    const rows = mergeDay([...parts, inD1])
      .filter((row) => matches(row, this.q) && isAfter(row, cursor) && (!until || compareRows(row, until) < 0))
      .map((row) => archivedRecord(row, keyNames));
    return { rows, until };
  }
}

// Where archived usage rows live in R2: `usage/<account id>/<YYYY-MM-DD>/<part>.jsonl`, one
// JSON object per line holding the usage_records row as D1 returns it (snake_case columns).
// Per account, so an account's export reads only its own objects; per UTC day, split into
// parts of at most PART_ROWS rows, numbered from 1 in the order they were written. A part is
// sorted by (completed_at, request_id); the parts of a day may interleave (a row that reached
// D1 late goes to a later part), so readers merge a day's parts.
export const PART_ROWS = 2_000;

export const DAY_MS = 24 * 3600_000;

// YYYY-MM-DD of the UTC day an instant falls in, and that day's first instant.
export const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);
export const dayStart = (day: string): number => Date.parse(`${day}T00:00:00Z`);

export interface ArchivedRow {
  request_id: string;
  account_id: string;
  completed_at: number;
  [column: string]: unknown;
}

export function accountPrefix(accountId: string): string {
  return `usage/${accountId}/`;
}

export function dayPrefix(accountId: string, day: string): string {
  return `${accountPrefix(accountId)}${day}/`;
}

export function partKey(accountId: string, day: string, part: number): string {
  return `${dayPrefix(accountId, day)}${String(part).padStart(6, "0")}.jsonl`;
}

export function partNumber(key: string): number {
  return Number(/\/(\d+)\.jsonl$/.exec(key)?.[1] ?? 0);
}

export function toJsonl(rows: readonly ArchivedRow[]): string {
  return rows.map((row) => `${JSON.stringify(row)}\n`).join("");
}

export function fromJsonl(text: string): ArchivedRow[] {
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as ArchivedRow);
}

export interface RowKey {
  completed_at: number;
  request_id: string;
}

// A part's first and last row keys ride in its R2 metadata, so a reader can pick the parts it
// needs from a listing without reading them.
export function partMetadata(rows: readonly ArchivedRow[]): Record<string, string> {
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  return {
    rows: String(rows.length),
    first: JSON.stringify([first.completed_at, first.request_id]),
    last: JSON.stringify([last.completed_at, last.request_id]),
  };
}

export function metadataKey(raw: string | undefined): RowKey | null {
  try {
    const [completedAt, requestId] = JSON.parse(raw ?? "") as [number, string];
    return Number.isSafeInteger(completedAt) && typeof requestId === "string" ? { completed_at: completedAt, request_id: requestId } : null;
  } catch {
    return null;
  }
}

// Keyset order of usage rows everywhere: completed_at, then request_id.
export function compareRows(a: RowKey, b: RowKey): number {
  return a.completed_at - b.completed_at || (a.request_id < b.request_id ? -1 : a.request_id > b.request_id ? 1 : 0);
}

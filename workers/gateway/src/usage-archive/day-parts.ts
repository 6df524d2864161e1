// Reading the archived parts of one account's day from R2.
import { accountPrefix, type ArchivedRow, compareRows, DAY_MS, dayPrefix, dayStart, fromJsonl, metadataKey, partNumber, type RowKey } from "./layout";


export interface PartInfo {
  key: string;
  // Its first and last rows' keys (the whole day when its metadata is missing).
  first: RowKey;
  last: RowKey;
}

export interface PartListing {
  keys: string[]; // in part order
  parts: PartInfo[]; // in part order
  last: number; // highest part number, 0 when none
}

export async function listDayParts(bucket: R2Bucket, accountId: string, day: string): Promise<PartListing> {
  const start = dayStart(day);
  const parts: PartInfo[] = [];
  let cursor: string | undefined;
  do {
    // `include` is honoured by R2 (and miniflare) though workers-types no longer declares it.
    const options = { prefix: dayPrefix(accountId, day), cursor, include: ["customMetadata"] };
    const page = await bucket.list(options as R2ListOptions);
    for (const o of page.objects) {
      parts.push({
        key: o.key,
        first: metadataKey(o.customMetadata?.first) ?? { completed_at: start, request_id: "" },
        last: metadataKey(o.customMetadata?.last) ?? { completed_at: start + DAY_MS, request_id: "" },
      });
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  parts.sort((a, b) => partNumber(a.key) - partNumber(b.key));
  const keys = parts.map((p) => p.key);
  return { keys, parts, last: keys.length > 0 ? partNumber(keys[keys.length - 1]!) : 0 };
}

export async function readPart(bucket: R2Bucket, key: string): Promise<ArchivedRow[]> {
  const object = await bucket.get(key);
  if (!object) throw new Error(`usage archive: part ${key} disappeared while being read`);
  return fromJsonl(await object.text());
}

// The days with archived parts of an account, from `fromDay` to `lastDay` (YYYY-MM-DD, inclusive).
export async function listArchivedDays(bucket: R2Bucket, accountId: string, fromDay: string, lastDay: string): Promise<string[]> {
  const prefix = accountPrefix(accountId);
  const days: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix, delimiter: "/", startAfter: `${prefix}${fromDay}`, cursor });
    for (const p of page.delimitedPrefixes) {
      const day = p.slice(prefix.length, -1);
      if (day >= fromDay && day <= lastDay) days.push(day);
    }
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor && (days.length === 0 || days[days.length - 1]! < lastDay));
  return days.sort();
}

// Every archived row of a day, merged across parts in keyset order, each request once.
export function mergeDay(parts: ArchivedRow[][]): ArchivedRow[] {
  const byId = new Map<string, ArchivedRow>();
  for (const rows of parts) for (const row of rows) byId.set(row.request_id, row);
  return [...byId.values()].sort(compareRows);
}

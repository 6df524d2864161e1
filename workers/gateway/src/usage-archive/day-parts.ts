// Reading the archived parts of one account's day from R2.
import { accountPrefix, type ArchivedRow, compareRows, dayPrefix, fromJsonl, partNumber } from "./layout";

export interface PartListing {
  keys: string[]; // in part order
  last: number; // highest part number, 0 when none
}

export async function listDayParts(bucket: R2Bucket, accountId: string, day: string): Promise<PartListing> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket.list({ prefix: dayPrefix(accountId, day), cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor);
  keys.sort((a, b) => partNumber(a) - partNumber(b));
  return { keys, last: keys.length > 0 ? partNumber(keys[keys.length - 1]!) : 0 };
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

// Usage retention: per-request rows stay in D1 for RETENTION_DAYS (whole UTC days); older days
// move to R2 (layout.ts) and leave D1. Daily roll-ups (usage_daily) stay in D1.
//
// Never lost, never twice, even when a run dies anywhere: a chunk of a day's rows is written as
// a new part, then exactly those rows (by request id) are deleted from D1. Parts are written one
// at a time, so only a day's last part can still have its rows in D1; a run that comes back to a
// day first deletes the last part's rows from D1 again. Readers also merge by request id.
// Runs are bounded by an operation budget (budget.ts) and scheduled often, so they never overlap.
import { intSetting } from "../env";
import { OperationBudget } from "./budget";
import { listDayParts, readPart } from "./day-parts";
import type { RetentionEnv } from "./env";
import { type ArchivedRow, DAY_MS, dayStart, PART_ROWS, partKey, partMetadata, toJsonl, utcDay } from "./layout";

export const DEFAULT_RETENTION_DAYS = 30;
// D1 queries and R2 operations per run, under the 50 subrequests of a free-plan invocation.
export const ARCHIVE_RUN_BUDGET = 40;

export interface ArchiveRun {
  archivedRows: number;
  partsWritten: number;
  // Nothing older than the retention window is left in D1.
  done: boolean;
}

// Rows completed before this instant (a UTC midnight) are archived.
export function retentionCutoff(now: number, days: number): number {
  return Math.floor(now / DAY_MS) * DAY_MS - days * DAY_MS;
}

async function deleteArchived(db: D1Database, rows: readonly ArchivedRow[]): Promise<void> {
  await db
    .prepare("DELETE FROM usage_records WHERE request_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(rows.map((r) => r.request_id)))
    .run();
}

// Moves one account's day to R2 as far as the budget allows; false when the budget ran out.
async function archiveDay(db: D1Database, bucket: R2Bucket, accountId: string, day: string, budget: OperationBudget, run: ArchiveRun): Promise<boolean> {
  if (!budget.take(1)) return false;
  let { keys, last } = await listDayParts(bucket, accountId, day);
  if (last > 0) {
    // The previous run may have died between writing the last part and deleting its rows.
    if (!budget.take(2)) return false;
    await deleteArchived(db, await readPart(bucket, keys[keys.length - 1]!));
  }
  const start = dayStart(day);
  for (;;) {
    if (!budget.take(3)) return false;
    const { results } = await db
      .prepare(
        `SELECT * FROM usage_records WHERE account_id = ? AND completed_at >= ? AND completed_at < ?
          ORDER BY completed_at, request_id LIMIT ?`,
      )
      .bind(accountId, start, start + DAY_MS, PART_ROWS)
      .all<ArchivedRow>();
    if (results.length === 0) return true;
    last += 1;
    await bucket.put(partKey(accountId, day, last), toJsonl(results), {
      httpMetadata: { contentType: "application/x-ndjson" },
      customMetadata: partMetadata(results),
    });
    await deleteArchived(db, results);
    run.archivedRows += results.length;
    run.partsWritten += 1;
    if (results.length < PART_ROWS) return true;
  }
}

export async function archiveExpiredUsage(
  db: D1Database,
  bucket: R2Bucket,
  options: { now?: number; retentionDays?: number; budget?: number } = {},
): Promise<ArchiveRun> {
  const cutoff = retentionCutoff(options.now ?? Date.now(), options.retentionDays ?? DEFAULT_RETENTION_DAYS);
  const budget = new OperationBudget(options.budget ?? ARCHIVE_RUN_BUDGET);
  const run: ArchiveRun = { archivedRows: 0, partsWritten: 0, done: false };
  while (budget.take(1)) {
    const oldest = await db
      .prepare("SELECT account_id, completed_at FROM usage_records WHERE completed_at < ? ORDER BY completed_at LIMIT 1")
      .bind(cutoff)
      .first<{ account_id: string; completed_at: number }>();
    if (!oldest) {
      run.done = true;
      break;
    }
    if (!(await archiveDay(db, bucket, oldest.account_id, utcDay(oldest.completed_at), budget, run))) break;
  }
  return run;
}

// The cron trigger's work (wrangler.toml [triggers]).
export async function runUsageRetention(env: RetentionEnv, now = Date.now()): Promise<ArchiveRun | null> {
  if (!env.USAGE_ARCHIVE) return null;
  return archiveExpiredUsage(env.DB, env.USAGE_ARCHIVE, { now, retentionDays: intSetting(env, "RETENTION_DAYS", DEFAULT_RETENTION_DAYS) });
}

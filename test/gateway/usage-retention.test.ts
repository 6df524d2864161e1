// Usage retention: per-request rows past RETENTION_DAYS move from D1 to R2 (real R2 through
// miniflare) by the cron trigger's handler, never lost and never twice, even when a run dies.
import { createScheduledController, env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../workers/gateway/src/index";
import { archiveExpiredUsage, retentionCutoff } from "../../workers/gateway/src/usage-archive/archive";
import { listDayParts, mergeDay, readPart } from "../../workers/gateway/src/usage-archive/day-parts";
import type { RetentionEnv } from "../../workers/gateway/src/usage-archive/env";
import { PART_ROWS } from "../../workers/gateway/src/usage-archive/layout";
import { insertUsageRows } from "./setup/usage-rows";

const DAY = 24 * 3600_000;
const bucket = () => (env as unknown as RetentionEnv).USAGE_ARCHIVE!;
const acct = () => `acct_${crypto.randomUUID().slice(0, 8)}`;

async function d1Ids(accountId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT request_id FROM usage_records WHERE account_id = ? ORDER BY request_id").bind(accountId).all<{ request_id: string }>();
  return results.map((r) => r.request_id);
}

async function archivedIds(accountId: string, day: string): Promise<string[]> {
  const { keys } = await listDayParts(bucket(), accountId, day);
  const ids: string[] = [];
  for (const key of keys) ids.push(...(await readPart(bucket(), key)).map((r) => r.request_id));
  return ids;
}

const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);

// Archives what earlier tests left behind, so a test's run sees only its own rows.
async function drain(now: number): Promise<void> {
  while (!(await archiveExpiredUsage(env.DB, bucket(), { now })).done);
}

// A D1 binding whose DELETE statements fail after the first `deletes`: the run "dies" there.
function dyingAfterDeletes(db: D1Database, deletes: number): D1Database {
  let seen = 0;
  return {
    prepare(sql: string) {
      const statement = db.prepare(sql);
      if (!sql.startsWith("DELETE")) return statement;
      return {
        bind: (...args: unknown[]) => ({
          run: async () => {
            if (++seen > deletes) throw new Error("isolate died");
            return statement.bind(...args).run();
          },
        }),
      };
    },
  } as unknown as D1Database;
}

describe("usage retention (cron)", () => {
  it("the scheduled handler moves whole UTC days past 30 days to R2 and leaves recent rows and roll-ups", async () => {
    const account = acct();
    const now = Date.now();
    const cutoff = retentionCutoff(now, 30);
    const old = cutoff - 2 * DAY + 3600_000;
    await insertUsageRows({ accountId: account, count: 30, firstAt: old, stepMs: 60_000, prefix: "old" }); // one old day
    await insertUsageRows({ accountId: account, count: 5, firstAt: cutoff - 1000, stepMs: 1, prefix: "edge" }); // the last archived day
    await insertUsageRows({ accountId: account, count: 7, firstAt: cutoff, stepMs: 1000, prefix: "kept" }); // inside the window
    await env.DB.prepare("INSERT INTO usage_daily (day, account_id, key_id, model, requests, cost_micros) VALUES (?, ?, '', 'deepseek-chat', 30, 3000)")
      .bind(dayOf(old), account)
      .run();

    await worker.scheduled(createScheduledController({ scheduledTime: now, cron: "*/10 * * * *" }), env);

    expect(await d1Ids(account)).toEqual(Array.from({ length: 7 }, (_, i) => `kept-${String(i).padStart(6, "0")}`));
    const oldParts = await listDayParts(bucket(), account, dayOf(old));
    expect(oldParts.keys).toEqual([`usage/${account}/${dayOf(old)}/000001.jsonl`]);
    const rows = await readPart(bucket(), oldParts.keys[0]!);
    expect(rows.map((r) => r.request_id)).toEqual(Array.from({ length: 30 }, (_, i) => `old-${String(i).padStart(6, "0")}`));
    // The whole row travels: every column of usage_records.
    expect(rows[0]).toMatchObject({ account_id: account, model: "deepseek-chat", cost_micros: 0, completed_at: old, status: "ok" });
    expect(await archivedIds(account, dayOf(cutoff - 1000))).toHaveLength(5);
    const rollup = await env.DB.prepare("SELECT requests, cost_micros FROM usage_daily WHERE account_id = ?").bind(account).first();
    expect(rollup).toEqual({ requests: 30, cost_micros: 3000 });
  });

  it("RETENTION_DAYS sets the window", async () => {
    const account = acct();
    const now = Date.now();
    await insertUsageRows({ accountId: account, count: 3, firstAt: retentionCutoff(now, 2) - DAY / 2, stepMs: 1, prefix: "a" });
    await insertUsageRows({ accountId: account, count: 2, firstAt: retentionCutoff(now, 2) + 1, stepMs: 1, prefix: "b" });
    const run = await archiveExpiredUsage(env.DB, bucket(), { now, retentionDays: 2 });
    expect(run.done).toBe(true);
    expect(await d1Ids(account)).toEqual(["b-000000", "b-000001"]);
  });

  it("a run that dies between writing a part and deleting its rows loses nothing and writes nothing twice", async () => {
    const account = acct();
    const now = Date.UTC(2030, 5, 15);
    await drain(now);
    const day = Date.UTC(2030, 0, 10);
    const n = 2 * PART_ROWS + 321;
    await insertUsageRows({ accountId: account, count: n, firstAt: day, stepMs: 7, prefix: "d" });

    // Dies at the second part's delete: part 2 is in R2 and its rows are still in D1.
    await expect(archiveExpiredUsage(dyingAfterDeletes(env.DB, 1), bucket(), { now })).rejects.toThrow("isolate died");
    expect((await listDayParts(bucket(), account, "2030-01-10")).last).toBe(2);
    expect(await d1Ids(account)).toHaveLength(n - PART_ROWS);

    const run = await archiveExpiredUsage(env.DB, bucket(), { now });
    expect(run.done).toBe(true);
    expect(await d1Ids(account)).toEqual([]);
    const ids = await archivedIds(account, "2030-01-10");
    expect(ids).toHaveLength(n);
    expect(new Set(ids).size).toBe(n);

    // Running again changes nothing.
    const again = await archiveExpiredUsage(env.DB, bucket(), { now });
    expect(again).toMatchObject({ archivedRows: 0, partsWritten: 0, done: true });
    expect(await archivedIds(account, "2030-01-10")).toHaveLength(n);
  });

  it("a run that dies writing to R2 leaves the rows in D1 for the next run", async () => {
    const account = acct();
    const now = Date.UTC(2031, 5, 15);
    await drain(now);
    await insertUsageRows({ accountId: account, count: 10, firstAt: Date.UTC(2031, 0, 3), stepMs: 1, prefix: "p" });
    const failing = { list: (o: R2ListOptions) => bucket().list(o), put: async () => Promise.reject(new Error("R2 unavailable")) } as unknown as R2Bucket;
    await expect(archiveExpiredUsage(env.DB, failing, { now })).rejects.toThrow("R2 unavailable");
    expect(await d1Ids(account)).toHaveLength(10);
    await archiveExpiredUsage(env.DB, bucket(), { now });
    expect(await d1Ids(account)).toEqual([]);
    expect(await archivedIds(account, "2031-01-03")).toHaveLength(10);
  });

  it("a row that reaches D1 late for an archived day goes to a new part; readers see every request once", async () => {
    const account = acct();
    const now = Date.UTC(2032, 5, 15);
    await drain(now);
    const day = Date.UTC(2032, 1, 1);
    await insertUsageRows({ accountId: account, count: 4, firstAt: day + 1000, stepMs: 1000, prefix: "x" });
    await archiveExpiredUsage(env.DB, bucket(), { now });
    await insertUsageRows({ accountId: account, count: 1, firstAt: day, stepMs: 1, prefix: "late" });
    await archiveExpiredUsage(env.DB, bucket(), { now });
    const { keys } = await listDayParts(bucket(), account, "2032-02-01");
    expect(keys).toHaveLength(2);
    const merged = mergeDay(await Promise.all(keys.map((k) => readPart(bucket(), k))));
    expect(merged.map((r) => r.request_id)).toEqual(["late-000000", "x-000000", "x-000001", "x-000002", "x-000003"]);
  });

  it("a run stops within its operation budget and the next run continues", async () => {
    const account = acct();
    const now = Date.UTC(2033, 5, 15);
    await drain(now);
    await insertUsageRows({ accountId: account, count: 6 * PART_ROWS, firstAt: Date.UTC(2033, 0, 1), stepMs: 1, prefix: "b" });
    const first = await archiveExpiredUsage(env.DB, bucket(), { now, budget: 10 });
    expect(first.done).toBe(false);
    expect(first.partsWritten).toBeLessThan(6);
    let runs = 1;
    while (!(await archiveExpiredUsage(env.DB, bucket(), { now, budget: 10 })).done) runs++;
    expect(runs).toBeGreaterThan(1);
    expect(await d1Ids(account)).toEqual([]);
    const ids = await archivedIds(account, "2033-01-01");
    expect(new Set(ids).size).toBe(6 * PART_ROWS);
    expect(ids).toHaveLength(6 * PART_ROWS);
  });
});

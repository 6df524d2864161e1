// Exports at scale: 100,000 usage rows, the older ones archived to R2 by the retention job. Each
// response is one part within a budget of D1 queries and R2 reads; a Link rel="next" cursor
// continues it, and following the links yields every row once, in order.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { EXPORT_BUDGET, PART_MAX_ROWS } from "../../../workers/gateway/src/dashboard/export";
import { RequestsReader } from "../../../workers/gateway/src/dashboard/export-requests";
import { archiveExpiredUsage, retentionCutoff } from "../../../workers/gateway/src/usage-archive/archive";
import { OperationBudget } from "../../../workers/gateway/src/usage-archive/budget";
import type { RetentionEnv } from "../../../workers/gateway/src/usage-archive/env";
import { parseCsv } from "../../support/csv";
import { insertUsageRows } from "../setup/usage-rows";
import { type DashboardClient, signedUp } from "./browser-client";

const DAY = 24 * 3600_000;
const N = 100_000;
const bucket = () => (env as unknown as RetentionEnv).USAGE_ARCHIVE!;

async function followParts(client: DashboardClient, first: string): Promise<{ parts: string[]; statuses: number[] }> {
  const parts: string[] = [];
  const statuses: number[] = [];
  let path: string | null = first;
  while (path) {
    const res = await client.get(path.replace(/^\/dashboard\/api/, ""));
    statuses.push(res.status);
    parts.push(await res.text());
    const link = res.headers.get("link");
    path = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    expect(parts.length).toBeLessThan(50);
  }
  return { parts, statuses };
}

// Counts what a reader asks of D1 and R2.
function counting<T extends object>(target: T, methods: string[], counter: { n: number }): T {
  return new Proxy(target, {
    get(t, prop) {
      const value = Reflect.get(t, prop, t);
      if (typeof value !== "function") return value;
      if (methods.includes(String(prop))) {
        return (...args: unknown[]) => {
          counter.n++;
          return value.apply(t, args);
        };
      }
      return value.bind(t);
    },
  });
}

describe("usage export at scale (D1 + R2)", () => {
  it("exports 100,000 rows across D1 and the R2 archive in budgeted parts, none lost or repeated", async () => {
    const { client, accountId } = await signedUp();
    const now = Date.now();
    const firstAt = retentionCutoff(now, 30) - 20 * DAY; // 20 days archived, about 30 in D1
    const span = 50 * DAY;
    const step = Math.floor(span / N);
    await insertUsageRows({ accountId, count: N, firstAt, stepMs: step, prefix: "s" });
    while (!(await archiveExpiredUsage(env.DB, bucket(), { now })).done);
    const inD1 = await env.DB.prepare("SELECT COUNT(*) AS n FROM usage_records WHERE account_id = ?").bind(accountId).first<{ n: number }>();
    expect(inD1!.n).toBeGreaterThan(20_000);
    expect(inD1!.n).toBeLessThan(N - 20_000);

    const range = `from=${firstAt}&to=${firstAt + N * step}`;
    const { parts, statuses } = await followParts(client, `/usage/export?format=csv&${range}`);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(parts.length).toBeGreaterThanOrEqual(Math.ceil(N / PART_MAX_ROWS));
    const rows: string[][] = [];
    for (const part of parts) {
      const [header, ...body] = parseCsv(part);
      expect(header![0]).toBe("request_id");
      expect(body.length).toBeLessThanOrEqual(PART_MAX_ROWS);
      rows.push(...body);
    }
    expect(rows).toHaveLength(N);
    const ids = rows.map((r) => r[0]!);
    expect(new Set(ids).size).toBe(N);
    expect(ids).toEqual([...ids].sort()); // completion order is id order here
    expect(rows.reduce((sum, r) => sum + Number(r[15]), 0)).toBe((N * (N - 1)) / 2);

    // JSON Lines, filtered by status (none failed): reading the archived days takes more than
    // one part's budget, so even empty parts link to the rest until the range is done.
    const failed = await followParts(client, `/usage/export?format=jsonl&status=failed&${range}`);
    expect(failed.parts.length).toBeGreaterThan(1);
    expect(failed.parts.join("")).toBe("");

    // Each part stays within the invocation budget of D1 queries and R2 operations.
    const calls = { n: 0 };
    const db = counting(env.DB, ["prepare"], calls);
    const r2 = counting(bucket(), ["get", "list", "head"], calls);
    let cursor = null;
    let seen = 0;
    do {
      calls.n = 0;
      const reader = new RequestsReader(db, r2, { accountId, from: firstAt, to: firstAt + N * step, filters: {} }, new OperationBudget(EXPORT_BUDGET));
      const part = await reader.part(cursor, PART_MAX_ROWS);
      expect(calls.n).toBeLessThanOrEqual(EXPORT_BUDGET);
      seen += part.rows.length;
      cursor = part.next;
    } while (cursor);
    expect(seen).toBe(N);
  }, 120_000);

  it("an archived day with more parts than one budget reads is exported in turns, a late part merged in order", async () => {
    const accountId = `acct_${crypto.randomUUID().slice(0, 8)}`;
    const now = Date.UTC(2034, 5, 1);
    const day = Date.UTC(2034, 0, 5);
    while (!(await archiveExpiredUsage(env.DB, bucket(), { now })).done); // what other tests left
    await insertUsageRows({ accountId, count: 5 * 2_000, firstAt: day, stepMs: 5, prefix: "m" });
    while (!(await archiveExpiredUsage(env.DB, bucket(), { now })).done);
    // A late row in the middle of the day becomes part 6.
    await insertUsageRows({ accountId, count: 1, firstAt: day + 5 * 4_321 + 2, stepMs: 1, prefix: "late" });
    while (!(await archiveExpiredUsage(env.DB, bucket(), { now })).done);

    const ids: string[] = [];
    let cursor = null;
    let turns = 0;
    do {
      // Room for the day listing, the day's D1 rows, key names and two parts.
      const reader = new RequestsReader(env.DB, bucket(), { accountId, from: day, to: day + 24 * 3600_000, filters: {} }, new OperationBudget(6));
      const part = await reader.part(cursor, PART_MAX_ROWS);
      ids.push(...part.rows.map((r) => r.request_id));
      cursor = part.next;
      turns++;
    } while (cursor && turns < 20);
    expect(turns).toBeGreaterThanOrEqual(3);
    expect(ids).toHaveLength(10_001);
    expect(new Set(ids).size).toBe(10_001);
    const lateAt = ids.indexOf("late-000000");
    expect(ids.slice(lateAt - 1, lateAt + 2)).toEqual(["m-004321", "late-000000", "m-004322"]);
  });

  it("a malformed cursor is a 400 naming the cursor", async () => {
    const { client } = await signedUp();
    const res = await client.get("/usage/export?format=csv&cursor=not-json");
    expect(res.status).toBe(400);
    expect((await res.json<any>()).error.param).toBe("cursor");
    expect((await client.get("/usage/export?group=day&cursor=" + btoa(JSON.stringify({ day: 1 })))).status).toBe(400);
  });

  it("the daily export continues with a cursor too", async () => {
    const { client, accountId } = await signedUp();
    // 30,000 roll-up rows: 300 days x 100 keys.
    await env.DB.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < 30000)
       INSERT INTO usage_daily (day, account_id, key_id, model, requests, cost_micros)
       SELECT date('2020-01-01', '+' || (i / 100) || ' days'), ?, 'k' || printf('%03d', i % 100), 'deepseek-chat', 1, i FROM n`,
    )
      .bind(accountId)
      .run();
    const { parts } = await followParts(client, `/usage/export?format=jsonl&group=day&from=${Date.UTC(2020, 0, 1)}&to=${Date.UTC(2021, 0, 1)}`);
    expect(parts.length).toBeGreaterThan(1);
    const rows = parts.flatMap((p) => p.trim().split("\n")).map((l) => JSON.parse(l));
    expect(rows).toHaveLength(30_000);
    expect(rows.reduce((sum, r) => sum + r.cost_micros, 0)).toBe((30_000 * 29_999) / 2);
  });
});

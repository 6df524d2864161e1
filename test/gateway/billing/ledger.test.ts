import { describe, expect, it } from "vitest";
import { runInDurableObject } from "cloudflare:test";
import { HOLD_PERSIST_AFTER_MS, HOLD_TTL_MS } from "../../../workers/gateway/src/billing/holds";
import { moveOldOutbox } from "../../../workers/gateway/src/billing/ledger-tables";
import { createAccount, credit } from "../setup/fixtures";
import {
  failingBatchDb,
  gatewayEnv,
  ledger,
  ledgerSql,
  restartLedger,
  PEAK_NOON,
  runLedgerAlarm,
  settlement,
  total,
  usageOf,
  usageRows,
  usageSums,
  withLedgerDb,
} from "./ledger-helpers";

const USD = 1_000_000;

async function grant(accountId: string, micros: number, expiresAt: number | null) {
  await gatewayEnv.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros, expires_at) VALUES (?, 'granted', ?, ?)")
    .bind(accountId, micros, expiresAt)
    .run();
}

describe("reserve, settle, release", () => {
  it("charges the exact price, releases the rest and writes one usage row and its roll-up", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    expect(await ledger(account).reserve({ accountId: account, requestId: "r1", amountMicros: 600_000 })).toEqual({ ok: true });
    expect(await total(account)).toMatchObject({ total: USD, reserved: 600_000 });

    // 1000 hit, 2000 miss, 3000 out (500 reasoning) at chat prices: 70 + 540 + 3300.
    const u = usageOf(2000, 3000, 1000, 500);
    expect(await ledger(account).settle(settlement(account, "r1", u))).toEqual({ costMicros: 3910, duplicate: false });
    expect(await total(account)).toMatchObject({ total: USD - 3910, reserved: 0 });

    const rows = await usageRows(account);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      request_id: "r1",
      account_id: account,
      key_id: "key_test",
      model: "deepseek-chat",
      endpoint: "chat.completions",
      cache_hit_tokens: 1000,
      cache_miss_tokens: 2000,
      completion_tokens: 3000,
      reasoning_tokens: 500,
      cost_micros: 3910,
      price_tier: "standard",
      status: "ok",
      worker_id: "worker-1",
      started_at: PEAK_NOON - 1000,
      completed_at: PEAK_NOON,
    });
    const daily = await gatewayEnv.DB.prepare("SELECT * FROM usage_daily WHERE account_id = ?").bind(account).all();
    expect(daily.results).toEqual([
      {
        day: "2025-04-01",
        account_id: account,
        key_id: "key_test",
        model: "deepseek-chat",
        requests: 1,
        cache_hit_tokens: 1000,
        cache_miss_tokens: 2000,
        completion_tokens: 3000,
        reasoning_tokens: 500,
        cost_micros: 3910,
      },
    ]);
  });

  it("records the off-peak tier by completion time", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await ledger(account).reserve({ accountId: account, requestId: "late", amountMicros: 10_000 });
    const offPeak = Date.UTC(2025, 3, 1, 16, 30, 0);
    const res = await ledger(account).settle(settlement(account, "late", usageOf(0, 1000), { startedAt: offPeak - 5000, completedAt: offPeak }));
    expect(res.costMicros).toBe(550);
    expect((await usageRows(account))[0]).toMatchObject({ price_tier: "off_peak", cost_micros: 550 });
  });

  it("answers 402-worthy ok:false when the worst case does not fit, counting open reservations", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    expect(await ledger(account).reserve({ accountId: account, requestId: "a", amountMicros: 10_001 })).toEqual({ ok: false });
    expect(await ledger(account).reserve({ accountId: account, requestId: "a", amountMicros: 6_000 })).toEqual({ ok: true });
    expect(await ledger(account).reserve({ accountId: account, requestId: "b", amountMicros: 6_000 })).toEqual({ ok: false });
    expect(await ledger(account).reserve({ accountId: account, requestId: "c", amountMicros: 4_000 })).toEqual({ ok: true });
    // Reserving the same request id again holds nothing more.
    expect(await ledger(account).reserve({ accountId: account, requestId: "c", amountMicros: 4_000 })).toEqual({ ok: true });
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 10_000 });
  });

  it("release gives the whole reservation back and charges nothing", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    await ledger(account).reserve({ accountId: account, requestId: "a", amountMicros: 10_000 });
    await ledger(account).release("a");
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 0 });
    expect(await usageRows(account)).toHaveLength(0);
    expect(await ledger(account).reserve({ accountId: account, requestId: "b", amountMicros: 10_000 })).toEqual({ ok: true });
  });

  it("picks up a top-up written after a refusal", async () => {
    const account = await createAccount();
    expect(await ledger(account).reserve({ accountId: account, requestId: "a", amountMicros: 1 })).toEqual({ ok: false });
    await credit(account, "topped_up", 5_000);
    expect(await ledger(account).reserve({ accountId: account, requestId: "a", amountMicros: 5_000 })).toEqual({ ok: true });
  });

  it("charges an aborted or failed request exactly the delivered tokens", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await ledger(account).reserve({ accountId: account, requestId: "aborted", amountMicros: 100_000 });
    await ledger(account).reserve({ accountId: account, requestId: "failed", amountMicros: 100_000 });
    // 1000 prompt (270) + 37 streamed tokens (40.7) = 310.7 -> 311
    const a = await ledger(account).settle(settlement(account, "aborted", usageOf(1000, 37), { status: "aborted" }));
    // 64 hit + 936 miss (4.48 + 252.72) + 0 streamed = 257.2 -> 257
    const f = await ledger(account).settle(settlement(account, "failed", usageOf(936, 0, 64), { status: "failed", workerId: "worker-2" }));
    expect([a.costMicros, f.costMicros]).toEqual([311, 257]);
    expect(await total(account)).toMatchObject({ total: USD - 311 - 257, reserved: 0 });
    expect((await usageRows(account)).map((r) => [r.request_id, r.status, r.completion_tokens, r.cost_micros])).toEqual([
      ["aborted", "aborted", 37, 311],
      ["failed", "failed", 0, 257],
    ]);
  });
});

describe("granted before topped-up", () => {
  it("spends granted credit first, the soonest-expiring grant first, then topped-up", async () => {
    const account = await createAccount();
    const now = Date.now();
    await credit(account, "topped_up", 10_000);
    await grant(account, 1_000, null);
    await grant(account, 2_000, now + 3_600_000);
    expect(await total(account)).toMatchObject({ granted: 3_000, toppedUp: 10_000 });

    await ledger(account).reserve({ accountId: account, requestId: "one", amountMicros: 5_000 });
    // 2500 output tokens of chat = 2750 micros: the expiring grant (2000), then 750 of the other.
    expect((await ledger(account).settle(settlement(account, "one", usageOf(0, 2500)))).costMicros).toBe(2750);
    expect(await total(account)).toMatchObject({ granted: 250, toppedUp: 10_000 });
    const lots = await ledgerSql(account, "SELECT remaining, expires_at IS NULL AS forever FROM grants ORDER BY credit_id");
    expect(lots).toEqual([
      { remaining: 250, forever: 1 },
      { remaining: 0, forever: 0 },
    ]);

    await ledger(account).reserve({ accountId: account, requestId: "two", amountMicros: 5_000 });
    expect((await ledger(account).settle(settlement(account, "two", usageOf(0, 1000)))).costMicros).toBe(1100);
    expect(await total(account)).toMatchObject({ granted: 0, toppedUp: 10_000 - 850 });
  });

  it("stops counting granted credit once it has expired", async () => {
    const account = await createAccount();
    const now = Date.now();
    await credit(account, "topped_up", 1_000);
    await grant(account, 5_000, now - 1);
    await grant(account, 7_000, now + 3_600_000);
    expect(await total(account)).toMatchObject({ granted: 7_000, toppedUp: 1_000 });
    expect(await ledger(account).reserve({ accountId: account, requestId: "x", amountMicros: 8_001 })).toEqual({ ok: false });
    expect(await ledger(account).reserve({ accountId: account, requestId: "x", amountMicros: 8_000 })).toEqual({ ok: true });

    // Let the second grant expire while nothing else changes.
    await ledgerSql(account, "UPDATE grants SET expires_at = ? WHERE remaining = 7000", now - 1);
    await restartLedger(account);
    expect(await total(account)).toMatchObject({ granted: 0, toppedUp: 1_000 });
  });
});

describe("exactly once", () => {
  it("rolls up a batch of settlements per day, key and model, each row once", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    const NEXT_DAY = PEAK_NOON + 24 * 60 * 60_000;
    const requests = [
      { id: "b1", keyId: "key_a", model: "deepseek-chat", completedAt: PEAK_NOON, usage: usageOf(1000, 100) },
      { id: "b2", keyId: "key_a", model: "deepseek-chat", completedAt: PEAK_NOON + 1, usage: usageOf(2000, 200, 500) },
      { id: "b3", keyId: "key_b", model: "deepseek-chat", completedAt: PEAK_NOON, usage: usageOf(3000, 300) },
      { id: "b4", keyId: "key_a", model: "deepseek-reasoner", completedAt: PEAK_NOON, usage: usageOf(4000, 400, 0, 100) },
      { id: "b5", keyId: null, model: "deepseek-chat", completedAt: NEXT_DAY, usage: usageOf(5000, 500) },
    ];
    for (const r of requests) await ledger(account).reserve({ accountId: account, requestId: r.id, amountMicros: 100_000 });
    // Settled side by side: one settlement batch, one D1 delivery.
    const settled = await Promise.all(
      requests.map((r) => ledger(account).settle(settlement(account, r.id, r.usage, { keyId: r.keyId, model: r.model, completedAt: r.completedAt, startedAt: r.completedAt - 10 }))),
    );
    const cost = (ids: string[]) => ids.reduce((sum, id) => sum + settled[requests.findIndex((r) => r.id === id)]!.costMicros, 0);

    const daily = await gatewayEnv.DB.prepare(
      "SELECT day, key_id, model, requests, cache_hit_tokens, cache_miss_tokens, completion_tokens, reasoning_tokens, cost_micros FROM usage_daily WHERE account_id = ? ORDER BY day, key_id, model",
    )
      .bind(account)
      .all();
    expect(daily.results).toEqual([
      { day: "2025-04-01", key_id: "key_a", model: "deepseek-chat", requests: 2, cache_hit_tokens: 500, cache_miss_tokens: 3000, completion_tokens: 300, reasoning_tokens: 0, cost_micros: cost(["b1", "b2"]) },
      { day: "2025-04-01", key_id: "key_a", model: "deepseek-reasoner", requests: 1, cache_hit_tokens: 0, cache_miss_tokens: 4000, completion_tokens: 400, reasoning_tokens: 100, cost_micros: cost(["b4"]) },
      { day: "2025-04-01", key_id: "key_b", model: "deepseek-chat", requests: 1, cache_hit_tokens: 0, cache_miss_tokens: 3000, completion_tokens: 300, reasoning_tokens: 0, cost_micros: cost(["b3"]) },
      { day: "2025-04-02", key_id: "", model: "deepseek-chat", requests: 1, cache_hit_tokens: 0, cache_miss_tokens: 5000, completion_tokens: 500, reasoning_tokens: 0, cost_micros: cost(["b5"]) },
    ]);
    const rows = await usageRows(account);
    expect(rows.map((r) => [r.request_id, r.key_id, r.model, r.cost_micros])).toEqual(
      requests.map((r, i) => [r.id, r.keyId, r.model, settled[i]!.costMicros]),
    );

    // The same rows delivered again (a lost acknowledgement) together with a new settlement's row,
    // in one delivery: only the new row is added.
    const again = (r: (typeof requests)[number], i: number) => JSON.stringify({
      requestId: r.id, accountId: account, keyId: r.keyId, model: r.model, endpoint: "chat.completions",
      cacheHitTokens: r.usage.cacheHitTokens, cacheMissTokens: r.usage.cacheMissTokens, completionTokens: r.usage.completionTokens,
      reasoningTokens: r.usage.reasoningTokens, costMicros: settled[i]!.costMicros, priceTier: "standard", status: "ok",
      workerId: "worker-1", startedAt: r.completedAt - 10, completedAt: r.completedAt,
    });
    await ledgerSql(account, "INSERT INTO usage_outbox (rows) VALUES (?)", `[${requests.map(again).join(",")}]`);
    await ledger(account).reserve({ accountId: account, requestId: "b6", amountMicros: 100_000 });
    const late = await ledger(account).settle(settlement(account, "b6", usageOf(10, 1), { keyId: "key_b" }));
    expect(await ledgerSql(account, "SELECT * FROM usage_outbox")).toEqual([]);
    const all = cost(requests.map((r) => r.id)) + late.costMicros;
    expect(await usageSums(account)).toEqual({ rows: 6, rowCost: all, dailyRequests: 6, dailyCost: all });
  });

  it("counts a settlement delivered twice once", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await ledger(account).reserve({ accountId: account, requestId: "dup", amountMicros: 50_000 });
    const s = settlement(account, "dup", usageOf(1000, 1000));
    const [first, second] = await Promise.all([ledger(account).settle(s), ledger(account).settle(s)]);
    expect([first, second].map((r) => r.duplicate).sort()).toEqual([false, true]);
    expect(first.costMicros).toBe(1370);
    expect(second.costMicros).toBe(1370);
    const third = await ledger(account).settle({ ...s, usage: usageOf(99_999, 99_999) });
    expect(third).toEqual({ costMicros: 1370, duplicate: true });
    expect(await total(account)).toMatchObject({ total: USD - 1370, reserved: 0 });
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 1370, dailyRequests: 1, dailyCost: 1370 });
  });

  it("recognises a duplicate after the ledger forgot the id (a restart), from the usage row", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await ledger(account).reserve({ accountId: account, requestId: "old", amountMicros: 50_000 });
    await ledger(account).settle(settlement(account, "old", usageOf(1000, 0)));
    expect(await ledgerSql(account, "SELECT * FROM usage_outbox")).toEqual([]); // delivered to D1
    await restartLedger(account); // the ledger restarts: memory is gone
    expect(await ledger(account).settle(settlement(account, "old", usageOf(1000, 0)))).toEqual({ costMicros: 270, duplicate: true });
    expect(await total(account)).toMatchObject({ total: USD - 270 });
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 270, dailyRequests: 1, dailyCost: 270 });
  });

  it("recognises a duplicate after a restart while its usage row still waits in the outbox", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    const restore = await withLedgerDb(account, failingBatchDb());
    await ledger(account).reserve({ accountId: account, requestId: "waiting", amountMicros: 50_000 });
    await ledger(account).settle(settlement(account, "waiting", usageOf(1000, 0)));
    await restartLedger(account); // the ledger restarts: memory is gone, the outbox is not
    expect(await ledger(account).settle(settlement(account, "waiting", usageOf(5000, 0)))).toEqual({ costMicros: 270, duplicate: true });
    await restore();
    expect(await runLedgerAlarm(account)).toBe(true);
    expect(await total(account)).toMatchObject({ total: USD - 270 });
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 270, dailyRequests: 1, dailyCost: 270 });
  });

  it("moves usage rows left in the outbox of an older ledger (a row per request) into one outbox row, and delivers them", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await total(account);
    const old = (id: string, cost: number) => JSON.stringify({
      requestId: id, accountId: account, keyId: "key_test", model: "deepseek-chat", endpoint: "chat.completions",
      cacheHitTokens: 0, cacheMissTokens: 10, completionTokens: 1, reasoningTokens: 0, costMicros: cost, priceTier: "standard",
      status: "ok", workerId: "worker-1", startedAt: PEAK_NOON - 10, completedAt: PEAK_NOON,
    });
    await ledgerSql(account, "CREATE TABLE outbox (request_id TEXT PRIMARY KEY, row TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)");
    await ledgerSql(account, "CREATE TABLE settlements (request_id TEXT PRIMARY KEY, cost INTEGER NOT NULL, settled_at INTEGER NOT NULL)");
    await ledgerSql(account, "INSERT INTO outbox (request_id, row, attempts) VALUES ('o1', ?, 2), ('o2', ?, 3)", old("o1", 11), old("o2", 22));
    await runInDurableObject(ledger(account), async (_, state) => moveOldOutbox(state.storage.sql));
    expect(await ledgerSql(account, "SELECT name FROM sqlite_master WHERE name IN ('outbox', 'settlements')")).toEqual([]);
    expect(await ledgerSql(account, "SELECT json_array_length(rows) AS n, attempts FROM usage_outbox")).toEqual([{ n: 2, attempts: 3 }]);
    await ledger(account).reserve({ accountId: account, requestId: "new", amountMicros: 50_000 });
    await ledger(account).settle(settlement(account, "new", usageOf(1000, 0)));
    expect(await ledgerSql(account, "SELECT * FROM usage_outbox")).toEqual([]);
    expect((await usageRows(account)).map((r) => [r.request_id, r.cost_micros])).toEqual([["new", 270], ["o1", 11], ["o2", 22]]);
  });

  it("keeps the settlement when D1 is down and writes the usage row from the alarm, once", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", USD);
    await total(account);
    const restore = await withLedgerDb(account, failingBatchDb());
    await ledger(account).reserve({ accountId: account, requestId: "outage", amountMicros: 50_000 });
    expect((await ledger(account).settle(settlement(account, "outage", usageOf(1000, 1000)))).costMicros).toBe(1370);
    expect(await usageSums(account)).toEqual({ rows: 0, rowCost: 0, dailyRequests: 0, dailyCost: 0 });
    expect(await ledgerSql(account, "SELECT rows ->> '$[0].requestId' AS request_id, attempts FROM usage_outbox")).toEqual([{ request_id: "outage", attempts: 1 }]);

    // Still down: the alarm retries and keeps the row.
    expect(await runLedgerAlarm(account)).toBe(true);
    expect(await ledgerSql(account, "SELECT attempts FROM usage_outbox")).toEqual([{ attempts: 2 }]);

    await restore();
    expect(await runLedgerAlarm(account)).toBe(true);
    expect(await ledgerSql(account, "SELECT * FROM usage_outbox")).toEqual([]);
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 1370, dailyRequests: 1, dailyCost: 1370 });

    // A delivery repeated after a lost acknowledgement changes nothing in D1.
    const row = (await usageRows(account))[0]!;
    const again = JSON.stringify({
      requestId: "outage", accountId: account, keyId: row.key_id, model: row.model, endpoint: row.endpoint,
      cacheHitTokens: 0, cacheMissTokens: 1000, completionTokens: 1000, reasoningTokens: 0, costMicros: 1370,
      priceTier: "standard", status: "ok", workerId: row.worker_id, startedAt: row.started_at, completedAt: row.completed_at,
    });
    await ledgerSql(account, "INSERT INTO usage_outbox (rows) VALUES (?)", `[${again}]`);
    await runLedgerAlarm(account);
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 1370, dailyRequests: 1, dailyCost: 1370 });
    expect(await total(account)).toMatchObject({ total: USD - 1370 });
  });
});

const holdsStored = () => new Promise((resolve) => setTimeout(resolve, HOLD_PERSIST_AFTER_MS + 100));

describe("alarm", () => {
  it("releases a reservation whose request never settled", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    await ledger(account).reserve({ accountId: account, requestId: "crashed", amountMicros: 9_000 });
    await ledger(account).reserve({ accountId: account, requestId: "live", amountMicros: 1_000 });
    expect(await ledger(account).reserve({ accountId: account, requestId: "next", amountMicros: 5_000 })).toEqual({ ok: false });

    // Holds that last reach storage, and the alarm is set for the earliest expiry among them;
    // before that expiry, the alarm releases nothing.
    await holdsStored();
    expect(await ledgerSql(account, "SELECT request_id FROM reservations ORDER BY request_id")).toEqual([{ request_id: "crashed" }, { request_id: "live" }]);
    expect(await runLedgerAlarm(account)).toBe(true);
    expect(await total(account)).toMatchObject({ reserved: 10_000 });

    // Move the crashed request's reservation past its time-to-live.
    await ledgerSql(account, "UPDATE reservations SET expires_at = ? WHERE request_id = 'crashed'", Date.now() - 1);
    await restartLedger(account);
    expect(await runLedgerAlarm(account)).toBe(true);
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 1_000 });
    expect(await ledger(account).reserve({ accountId: account, requestId: "next", amountMicros: 5_000 })).toEqual({ ok: true });
    await holdsStored();
    const [next] = (await ledgerSql(account, "SELECT expires_at FROM reservations WHERE request_id = 'next'")) as { expires_at: number }[];
    expect(next!.expires_at).toBeGreaterThan(Date.now() + HOLD_TTL_MS - 60_000);
  });

  it("still charges a late settlement after its reservation was released, within the balance", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 1_000);
    await ledger(account).reserve({ accountId: account, requestId: "slow", amountMicros: 1_000 });
    await holdsStored();
    await ledgerSql(account, "UPDATE reservations SET expires_at = ?", Date.now() - 1);
    await restartLedger(account);
    await runLedgerAlarm(account);
    await ledger(account).reserve({ accountId: account, requestId: "other", amountMicros: 600 });
    // The late request cost 1100 but only 400 is not held by the other request.
    expect(await ledger(account).settle(settlement(account, "slow", usageOf(0, 1000)))).toEqual({ costMicros: 400, duplicate: false });
    expect(await total(account)).toMatchObject({ total: 600, reserved: 600 });
    expect(await usageSums(account)).toMatchObject({ rows: 1, rowCost: 400 });
  });
});

describe("settlement batches", () => {
  it("a balance read includes every settlement the ledger has received, even one still waiting for its batch", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    await ledger(account).reserve({ accountId: account, requestId: "batched", amountMicros: 5_000 });
    const settling = ledger(account).settle(settlement(account, "batched", usageOf(1000, 0)));
    await new Promise((r) => setTimeout(r, 2)); // the settlement has arrived; its batch runs later
    expect(await total(account)).toMatchObject({ total: 10_000 - 270, reserved: 0 });
    expect(await settling).toEqual({ costMicros: 270, duplicate: false });
    expect(await total(account)).toMatchObject({ total: 10_000 - 270, reserved: 0 });
  });
});

describe("holds in memory and in storage", () => {
  it("writes nothing for a hold settled within HOLD_PERSIST_AFTER_MS", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    await ledger(account).reserve({ accountId: account, requestId: "quick", amountMicros: 5_000 });
    await ledger(account).settle(settlement(account, "quick", usageOf(1000, 0)));
    await holdsStored();
    expect(await ledgerSql(account, "SELECT * FROM reservations")).toEqual([]);
    expect(await ledgerSql(account, "SELECT * FROM usage_outbox")).toEqual([]);
    expect(await usageRows(account)).toMatchObject([{ request_id: "quick", cost_micros: 270 }]);
  });

  it("after a restart keeps the holds that lasted; a younger one's request is still charged, within the balance", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    await ledger(account).reserve({ accountId: account, requestId: "long", amountMicros: 6_000 });
    await holdsStored();
    await ledger(account).reserve({ accountId: account, requestId: "young", amountMicros: 3_000 });
    expect(await total(account)).toMatchObject({ reserved: 9_000 });

    await restartLedger(account); // the ledger restarts: memory is gone
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 6_000 });
    // Its hold gone, the young request's money can be reserved by another...
    expect(await ledger(account).reserve({ accountId: account, requestId: "other", amountMicros: 4_000 })).toEqual({ ok: true });
    // ...and when it settles it is charged only what the other holds leave: never below zero.
    expect(await ledger(account).settle(settlement(account, "young", usageOf(0, 3000)))).toEqual({ costMicros: 0, duplicate: false });
    expect(await ledger(account).settle(settlement(account, "long", usageOf(0, 1000)))).toEqual({ costMicros: 1100, duplicate: false });
    expect(await total(account)).toMatchObject({ total: 8_900, reserved: 4_000 });
  });
});

// The ledger goes away mid-stream: the money still arrives, exactly once. A ledger that cannot
// settle (unreachable, throwing) gets the settlement through the settlement queue once it is back;
// a ledger that restarts mid-stream keeps the request's hold and settles it as usual; a settlement
// delivered again by the queue changes nothing.
import { describe, expect, it } from "vitest";
import { priceUsage } from "../../../workers/gateway/src/billing/pricing";
import type { Settlement } from "../../../workers/gateway/src/billing/settlement";
import { findModel } from "../../../workers/gateway/src/db/models";
import { post, readSse } from "../chat/helpers";
import { breakLedgerSettle, payingAccount, eventually, gatewayEnv, ledgerSql, restartLedger, runLedgerAlarm, sleep, total, usageRows, usageSums } from "./ledger-helpers";

const BALANCE = 1_000_000;

const chat = (content: string) => ({ model: "deepseek-chat", messages: [{ role: "user", content }], stream: true, stream_options: { include_usage: true } });

async function settledOnce(account: string, usage: any) {
  await eventually(async () => (await usageRows(account)).length === 1 && (await total(account)).reserved === 0, "the settlement", 30_000);
  const [row] = await usageRows(account);
  expect(row).toMatchObject({ status: "ok", completion_tokens: usage.completion_tokens, cache_miss_tokens: usage.prompt_cache_miss_tokens });
  const model = (await findModel(gatewayEnv.DB, "deepseek-chat"))!;
  const expected = priceUsage(model, { promptTokens: usage.prompt_tokens, cacheHitTokens: usage.prompt_cache_hit_tokens, cacheMissTokens: usage.prompt_cache_miss_tokens, completionTokens: usage.completion_tokens, reasoningTokens: 0 }, row!.completed_at);
  expect(row!.cost_micros).toBe(expected.costMicros);
  expect(await total(account)).toMatchObject({ total: BALANCE - row!.cost_micros, reserved: 0 });
  expect(await usageSums(account)).toEqual({ rows: 1, rowCost: row!.cost_micros, dailyRequests: 1, dailyCost: row!.cost_micros });
  return row!;
}

describe("the ledger fails mid-stream", () => {
  it("the settlement waits in the queue while the ledger cannot settle, lands once it is restarted, and a redelivery changes nothing", async () => {
    const { account, key } = await payingAccount(BALANCE);
    const res = await post("/chat/completions", key, chat("outage [[words:6]] [[slow:350]]"));
    expect(res.status).toBe(200);
    const reading = readSse(res);
    await sleep(1_300); // the hold has lasted: it is in the ledger's storage
    await breakLedgerSettle(account);
    const { events, done } = await reading;
    expect(done).toBe(true);
    const usage = events.at(-1).usage;
    expect(usage.completion_tokens).toBe(6);

    // The pipeline's quick retries are over and the queue's first tries fail: nothing is charged,
    // no row is written, and the money stays held.
    await sleep(4_000);
    expect(await usageRows(account)).toEqual([]);
    expect(await ledgerSql(account, "SELECT count(*) AS n FROM reservations")).toEqual([{ n: 1 }]);

    await restartLedger(account);
    const row = await settledOnce(account, usage);
    expect(row.usage_source).toBe("upstream");

    // The queue delivers the same settlement again (at-least-once delivery): charged once.
    const again: Settlement = {
      accountId: account,
      requestId: row.request_id,
      keyId: row.key_id,
      model: row.model,
      endpoint: row.endpoint,
      usage: { promptTokens: usage.prompt_tokens, cacheHitTokens: usage.prompt_cache_hit_tokens, cacheMissTokens: usage.prompt_cache_miss_tokens, completionTokens: usage.completion_tokens, reasoningTokens: 0 },
      status: "ok",
      workerId: row.worker_id,
      startedAt: row.started_at,
      completedAt: row.completed_at,
    };
    await gatewayEnv.SETTLEMENTS.sendBatch([{ body: again }, { body: again }]);
    await restartLedger(account); // and once more, so that only storage and D1 can recognise it
    await gatewayEnv.SETTLEMENTS.send(again);
    await sleep(3_000);
    await settledOnce(account, usage);
  });

  it("a ledger restarted mid-stream keeps the request's hold, extended by its heartbeat past the time-to-live, and settles it once", async () => {
    const { account, key } = await payingAccount(BALANCE);
    const res = await post("/chat/completions", key, chat("restart [[words:12]] [[slow:600]]"));
    const reading = readSse(res);
    await sleep(1_300);
    await restartLedger(account);
    expect((await total(account)).reserved).toBeGreaterThan(0);
    // Past the 5 s time-to-live of the tests, with the alarm run: the new ledger heard the beats.
    await sleep(5_500);
    await runLedgerAlarm(account);
    expect((await total(account)).reserved).toBeGreaterThan(0);
    const { events } = await reading;
    await settledOnce(account, events.at(-1).usage);
  });
});

// The settlement queue: a settlement the ledger could not take is settled by the consumer, by
// request id, exactly once however often it is delivered; one that keeps failing is dead-lettered
// into D1 where operators see it.
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Settlement } from "../../../workers/gateway/src/billing/settlement";
import { settlementQueueConsumer } from "../../../workers/gateway/src/billing/settlement-queue";
import { createAccount, credit } from "../setup/fixtures";
import { HOLD_PERSIST_AFTER_MS } from "../../../workers/gateway/src/billing/holds";
import { breakLedgerSettle, eventually, sleep, gatewayEnv, ledger, restartLedger, settlement, total, usageOf, usageSums } from "./ledger-helpers";

const USD = 1_000_000;

async function accountWithHold(requestId: string) {
  const account = await createAccount();
  await credit(account, "topped_up", USD);
  expect(await ledger(account).reserve({ accountId: account, requestId, amountMicros: 50_000 })).toEqual({ ok: true });
  return account;
}

// Runs the consumer on one batch, as the runtime would, and says which messages it acked/retried.
async function consume(queue: string, bodies: Settlement[], attempts = 1) {
  const batch = createMessageBatch<Settlement>(
    queue,
    bodies.map((body, i) => ({ id: `m${i}`, timestamp: new Date(), attempts, body })),
  );
  const ctx = createExecutionContext();
  await settlementQueueConsumer(batch, gatewayEnv);
  return getQueueResult(batch, ctx);
}

describe("the settlement queue's consumer", () => {
  it("settles a queued settlement once, and a redelivery of it changes nothing", async () => {
    const account = await accountWithHold("q-once");
    const s = settlement(account, "q-once", usageOf(1000, 1000));
    expect(await consume("llm-settlements", [s])).toMatchObject({ explicitAcks: ["m0"], retryMessages: [] });
    expect(await consume("llm-settlements", [s, s])).toMatchObject({ explicitAcks: ["m0", "m1"], retryMessages: [] });
    expect(await total(account)).toMatchObject({ total: USD - 1370, reserved: 0 });
    await eventually(async () => (await usageSums(account)).rows === 1, "the usage row");
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 1370, dailyRequests: 1, dailyCost: 1370 });
  });

  it("retries while the ledger fails and settles once it is back", async () => {
    const account = await accountWithHold("q-down");
    const s = settlement(account, "q-down", usageOf(1000, 0));
    await sleep(HOLD_PERSIST_AFTER_MS + 200); // the request ran a while: its hold is in storage
    await breakLedgerSettle(account);
    const failed = await consume("llm-settlements", [s], 3);
    expect(failed.explicitAcks).toEqual([]);
    expect(failed.retryMessages).toEqual([{ msgId: "m0" }]);

    await restartLedger(account);
    expect(await total(account)).toMatchObject({ total: USD, reserved: 50_000 }); // nothing charged, still held
    expect(await consume("llm-settlements", [s], 4)).toMatchObject({ explicitAcks: ["m0"] });
    expect(await total(account)).toMatchObject({ total: USD - 270, reserved: 0 });
  });

  it("records dead letters in D1 once per request, for operators", async () => {
    const account = await createAccount();
    const s = settlement(account, "q-dead", usageOf(10, 10));
    expect(await consume("llm-settlements-dlq", [s, s], 21)).toMatchObject({ ackAll: true });
    const { results } = await gatewayEnv.DB.prepare("SELECT * FROM dead_settlements WHERE account_id = ?").bind(account).all<any>();
    expect(results).toHaveLength(1);
    expect(results[0]).toMatchObject({ request_id: "q-dead", attempts: 21, resettled_at: null });
    expect(JSON.parse(results[0].settlement)).toEqual(s);
  });
});

describe("the settlement queue, through the runtime's queue", () => {
  it("delivers a sent settlement to the ledger; the same settlement sent again is charged once", async () => {
    const account = await accountWithHold("q-real");
    const s = settlement(account, "q-real", usageOf(2000, 100));
    await gatewayEnv.SETTLEMENTS.send(s);
    await eventually(async () => (await total(account)).reserved === 0, "the queued settlement");
    await gatewayEnv.SETTLEMENTS.sendBatch([{ body: s }, { body: s }]);
    await eventually(async () => (await usageSums(account)).rows === 1, "the usage row");
    await new Promise((r) => setTimeout(r, 2_500)); // the redeliveries have been consumed
    expect(await total(account)).toMatchObject({ total: USD - 650, reserved: 0 });
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 650, dailyRequests: 1, dailyCost: 650 });
  });
});

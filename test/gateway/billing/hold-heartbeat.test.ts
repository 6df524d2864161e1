// Long streams keep their hold: the pipeline extends it while the request runs (a heartbeat), and
// it lapses only when nothing has been heard from its request for the hold's time-to-live. The
// test configuration (vitest.config.ts) holds for 5 s with a beat every 500 ms.
import { describe, expect, it } from "vitest";
import { HOLD_PERSIST_AFTER_MS } from "../../../workers/gateway/src/billing/holds";
import { post } from "../chat/helpers";
import { createAccount, createKey, credit } from "../setup/fixtures";
import { eventually, ledger, payingAccount, ledgerSql, runLedgerAlarm, sleep, total, usageRows } from "./ledger-helpers";

const HOLD_MS = 1_200;

describe("a hold's heartbeat, at the ledger", () => {
  it("a hold extended every few hundred ms outlives its time-to-live; once the beats stop it lapses", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 10_000);
    const l = () => ledger(account);
    expect(await l().reserve({ accountId: account, requestId: "beating", amountMicros: 4_000, holdMs: HOLD_MS })).toEqual({ ok: true });
    expect(await l().reserve({ accountId: account, requestId: "silent", amountMicros: 3_000, holdMs: HOLD_MS })).toEqual({ ok: true });
    await sleep(HOLD_PERSIST_AFTER_MS + 100); // both holds are in storage now

    const started = Date.now();
    while (Date.now() - started < 2 * HOLD_MS) {
      expect(await l().extendHold(account, "beating", HOLD_MS)).toBe(true);
      await sleep(250);
    }
    await runLedgerAlarm(account);
    // The silent one lapsed; the beating one is held, in memory and in storage.
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 4_000 });
    expect(await ledgerSql(account, "SELECT request_id FROM reservations")).toEqual([{ request_id: "beating" }]);
    expect(await l().extendHold(account, "silent", HOLD_MS)).toBe(false);

    await sleep(HOLD_MS + 100); // nothing heard
    await runLedgerAlarm(account);
    expect(await total(account)).toMatchObject({ total: 10_000, reserved: 0 });
    expect(await l().extendHold(account, "beating", HOLD_MS)).toBe(false);
  });
});

describe("a hold's heartbeat, through the pipeline", () => {
  it("a stream running longer than the hold's time-to-live keeps its hold to the end and is charged in full", async () => {
    const { account, key } = await payingAccount(1_000_000);
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content: "long [[words:9]] [[slow:750]]" }], stream: true });
    expect(res.status).toBe(200);
    const reading = res.text();
    // Past the 5 s time-to-live, with the ledger's alarm run as it would be: still held.
    await sleep(6_000);
    await runLedgerAlarm(account);
    expect((await total(account)).reserved).toBeGreaterThan(0);
    const text = await reading;
    expect(text).toContain("data: [DONE]");
    await eventually(async () => (await usageRows(account)).length === 1 && (await total(account)).reserved === 0, "the settlement");
    const [row] = await usageRows(account);
    expect(row).toMatchObject({ status: "ok", completion_tokens: 9, usage_source: "upstream" });
    expect(1_000_000 - (await total(account)).total).toBe(row!.cost_micros);
  });
});

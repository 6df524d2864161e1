// Dead letters of the settlement queue are visible to operators in the dashboard's admin API, and
// settling one again charges it exactly once, however often an operator asks.
import { createMessageBatch } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Settlement } from "../../../workers/gateway/src/billing/settlement";
import { settlementQueueConsumer } from "../../../workers/gateway/src/billing/settlement-queue";
import { makeAdmin, signedUp } from "../dashboard/browser-client";
import { createAccount, credit } from "../setup/fixtures";
import { gatewayEnv, ledger, settlement, total, usageOf, usageSums } from "./ledger-helpers";

async function deadLetter(s: Settlement): Promise<void> {
  const batch = createMessageBatch<Settlement>("llm-settlements-dlq", [{ id: "d0", timestamp: new Date(), attempts: 21, body: s }]);
  await settlementQueueConsumer(batch, gatewayEnv);
}

describe("dead settlements in the admin API", () => {
  it("are listed for operators only, and resettled once", async () => {
    const account = await createAccount();
    await credit(account, "topped_up", 1_000_000);
    const requestId = `dead-${crypto.randomUUID().slice(0, 8)}`;
    expect(await ledger(account).reserve({ accountId: account, requestId, amountMicros: 50_000 })).toEqual({ ok: true });
    const s = settlement(account, requestId, usageOf(1000, 1000));
    await deadLetter(s);

    const { client: user } = await signedUp();
    expect((await user.get("/admin/dead-settlements")).status).toBe(403);
    expect((await user.post(`/admin/dead-settlements/${requestId}/resettle`)).status).toBe(403);

    const op = await signedUp();
    await makeAdmin(op.email);
    const listed = await (await op.client.get("/admin/dead-settlements")).json<any>();
    expect(listed.data.find((d: any) => d.request_id === requestId)).toMatchObject({ account_id: account, attempts: 21, resettled_at: null, settlement: s });

    const first = await op.client.post(`/admin/dead-settlements/${requestId}/resettle`);
    expect(await first.json()).toEqual({ request_id: requestId, cost_micros: 1370, duplicate: false });
    const again = await op.client.post(`/admin/dead-settlements/${requestId}/resettle`);
    expect(await again.json()).toEqual({ request_id: requestId, cost_micros: 1370, duplicate: true });
    const audit = (await (await op.client.get("/admin/audit")).json<any>()).data.filter((e: any) => e.target === requestId);
    expect(audit).toHaveLength(2);
    expect(audit[0]).toMatchObject({ actor: op.email, action: "resettle" });
    expect(await total(account)).toMatchObject({ total: 1_000_000 - 1370, reserved: 0 });
    expect(await usageSums(account)).toEqual({ rows: 1, rowCost: 1370, dailyRequests: 1, dailyCost: 1370 });
    const after = await (await op.client.get("/admin/dead-settlements")).json<any>();
    expect(after.data.find((d: any) => d.request_id === requestId).resettled_at).toBeGreaterThan(0);

    expect((await op.client.post("/admin/dead-settlements/no-such-request/resettle")).status).toBe(404);
  });
});

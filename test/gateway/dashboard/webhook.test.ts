import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../../workers/gateway/src/app";
import { signPayload } from "../../../workers/gateway/src/dashboard/webhook";
import { signedUp } from "./browser-client";

const SECRET = "whsec_test_0123456789";
const app = buildApp();

async function deliver(body: string, signature: string | null, secret: string | undefined = SECRET): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (signature !== null) headers["x-payment-signature"] = signature;
  const ctx = createExecutionContext();
  const res = await app.fetch(
    new Request("https://gw.test/dashboard/api/webhooks/payment", { method: "POST", headers, body }),
    { ...env, PAYMENT_WEBHOOK_SECRET: secret },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

async function signed(body: string, at = Math.floor(Date.now() / 1000), secret = SECRET): Promise<string> {
  return `t=${at},v1=${await signPayload(secret, at, body)}`;
}

const paymentEvent = (id: string, accountId: string, amount: number) =>
  JSON.stringify({ id, type: "payment.succeeded", data: { account_id: accountId, amount_micros: amount, currency: "USD" } });

describe("payment webhook", () => {
  it("tops up once per event id, however often it is delivered", async () => {
    const { client, accountId } = await signedUp();
    const body = paymentEvent(`evt_${crypto.randomUUID()}`, accountId, 20_000_000);
    const first = await deliver(body, await signed(body));
    expect(first.status).toBe(200);
    expect(await first.json()).toEqual({ received: true, duplicate: false });
    const again = await deliver(body, await signed(body));
    expect(await again.json()).toEqual({ received: true, duplicate: true });

    const balance = await (await client.get("/balance")).json<any>();
    expect(balance.balances[0]).toMatchObject({ granted_micros: 5_000_000, topped_up_micros: 20_000_000 });
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM balance_credits WHERE account_id = ? AND kind = 'topped_up'").bind(accountId).first<{ n: number }>();
    expect(rows?.n).toBe(1);
  });

  it("refuses a bad signature, another secret, a tampered body and an old timestamp", async () => {
    const { accountId } = await signedUp();
    const body = paymentEvent(`evt_${crypto.randomUUID()}`, accountId, 1_000_000);
    expect((await deliver(body, null)).status).toBe(401);
    expect((await deliver(body, `t=${Math.floor(Date.now() / 1000)},v1=${"0".repeat(64)}`)).status).toBe(401);
    expect((await deliver(body, await signed(body, undefined, "some other secret"))).status).toBe(401);
    expect((await deliver(body.replace("1000000", "9000000"), await signed(body))).status).toBe(401);
    const old = Math.floor(Date.now() / 1000) - 3600;
    const replay = await deliver(body, await signed(body, old));
    expect(replay.status).toBe(401);
    expect((await replay.json<any>()).error.message).toContain("timestamp");
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM balance_credits WHERE account_id = ? AND kind = 'topped_up'").bind(accountId).first<{ n: number }>();
    expect(rows?.n).toBe(0);
  });

  it("ignores other event types and is off without a secret", async () => {
    const body = JSON.stringify({ id: "evt_other", type: "payment.refunded" });
    expect(await (await deliver(body, await signed(body))).json()).toEqual({ received: true, ignored: true });
    expect((await deliver(body, await signed(body), "")).status).toBe(503);
  });
});

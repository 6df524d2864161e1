// Payment provider webhook: the integration point for real top-ups.
// The provider signs `<timestamp>.<raw body>` with HMAC-SHA256 under PAYMENT_WEBHOOK_SECRET and
// sends `x-payment-signature: t=<unix seconds>,v1=<hex>`. Old timestamps are refused (replay),
// and the event id becomes balance_credits.external_ref, so a redelivered event credits once.
import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../errors/api-error";
import { readBodyText } from "../middleware/json-body";
import type { DashboardAppEnv } from "./env";
import { invalidInput, notFoundHere } from "./errors";

export const SIGNATURE_HEADER = "x-payment-signature";
export const TOLERANCE_SECONDS = 300;

const event = z.object({
  id: z.string().min(1).max(200),
  type: z.string(),
  data: z
    .object({
      account_id: z.string().min(1),
      amount_micros: z.number().int().positive(),
      currency: z.string().regex(/^[A-Z]{3}$/).default("USD"),
    })
    .optional(),
});

const badSignature = (why: string) => new ApiError(401, `Webhook signature rejected: ${why}`, null, {}, "bad_signature");

function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export async function signPayload(secret: string, timestamp: number, body: string): Promise<string> {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${timestamp}.${body}`));
  return [...new Uint8Array(mac)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function verify(secret: string, header: string | undefined, body: string, nowSeconds: number): Promise<void> {
  const parts = Object.fromEntries((header ?? "").split(",").map((p) => p.trim().split("=", 2) as [string, string]));
  const timestamp = Number(parts.t);
  const signature = parts.v1 ?? "";
  if (!Number.isSafeInteger(timestamp) || !/^[0-9a-f]{64}$/.test(signature)) throw badSignature("malformed header");
  if (Math.abs(nowSeconds - timestamp) > TOLERANCE_SECONDS) throw badSignature("timestamp outside the tolerance");
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const ok = await crypto.subtle.verify("HMAC", key, hexToBytes(signature), new TextEncoder().encode(`${timestamp}.${body}`));
  if (!ok) throw badSignature("signature mismatch");
}

export const webhookRoutes = new Hono<DashboardAppEnv>().post("/payment", async (c) => {
  const secret = c.env.PAYMENT_WEBHOOK_SECRET;
  if (!secret) throw new ApiError(503, "Payment webhook is not configured", null, {}, "not_configured");
  const raw = await readBodyText(c.req.raw, 64 * 1024);
  await verify(secret, c.req.header(SIGNATURE_HEADER), raw, Math.floor(Date.now() / 1000));

  let parsed: z.infer<typeof event>;
  try {
    const result = event.safeParse(JSON.parse(raw));
    if (!result.success) throw new Error(result.error.issues[0]?.message);
    parsed = result.data;
  } catch (err) {
    throw invalidInput(`Malformed event: ${(err as Error).message}`);
  }
  if (parsed.type !== "payment.succeeded" || !parsed.data) return c.json({ received: true, ignored: true });

  const { account_id: accountId, amount_micros: amount, currency } = parsed.data;
  const account = await c.env.DB.prepare("SELECT id FROM accounts WHERE id = ?").bind(accountId).first();
  if (!account) throw notFoundHere("Account");
  const inserted = await c.env.DB.prepare(
    `INSERT INTO balance_credits (account_id, kind, currency, amount_micros, external_ref, note)
     VALUES (?, 'topped_up', ?, ?, ?, 'payment') ON CONFLICT(external_ref) DO NOTHING RETURNING id`,
  )
    .bind(accountId, currency, amount, parsed.id)
    .first<{ id: number }>();
  return c.json({ received: true, duplicate: !inserted });
});

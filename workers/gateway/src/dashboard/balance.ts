// Balance page data: the ledger's balances (granted and topped-up), the credits that built
// them, and the most recent charges (usage rows with a cost).
import { Hono } from "hono";
import { ledgerFor } from "../stubs";
import type { DashboardAppEnv } from "./env";

const RECENT = 20;

export const balanceRoutes = new Hono<DashboardAppEnv>().get("/", async (c) => {
  const accountId = c.get("session").accountId;
  const [balances, credits, charges] = await Promise.all([
    ledgerFor(c.env, accountId).balances(accountId),
    c.env.DB.prepare(
      "SELECT id, kind, currency, amount_micros, expires_at, note, created_at FROM balance_credits WHERE account_id = ? ORDER BY id DESC LIMIT ?",
    )
      .bind(accountId, RECENT)
      .all(),
    c.env.DB.prepare(
      `SELECT r.request_id, r.model, r.key_id, k.name AS key_name, r.cost_micros, r.price_tier, r.status, r.completed_at
         FROM usage_records r LEFT JOIN api_keys k ON k.id = r.key_id AND k.account_id = r.account_id
        WHERE r.account_id = ? AND r.cost_micros > 0 ORDER BY r.completed_at DESC LIMIT ?`,
    )
      .bind(accountId, RECENT)
      .all(),
  ]);
  const list = balances.length > 0 ? balances : [{ currency: "USD", grantedMicros: 0, toppedUpMicros: 0 }];
  return c.json({
    balances: list.map((b) => ({
      currency: b.currency,
      granted_micros: b.grantedMicros,
      topped_up_micros: b.toppedUpMicros,
      total_micros: b.grantedMicros + b.toppedUpMicros,
    })),
    credits: credits.results,
    charges: charges.results,
  });
});

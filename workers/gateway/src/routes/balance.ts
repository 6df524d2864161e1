// GET /user/balance: the ledger's balances as the contract's strings.
import { Hono } from "hono";
import { ledgerFor } from "../stubs";
import { formatAmount } from "../billing/money";
import { authenticate } from "../auth/authenticate";
import type { AppEnv } from "../env";

export const balanceRoute = new Hono<AppEnv>()
  .use(authenticate)
  .get("/", async (c) => {
  const { accountId } = c.get("auth");
  const balances = await ledgerFor(c.env, accountId).balances(accountId);
  const infos = (balances.length > 0 ? balances : [{ currency: "USD", grantedMicros: 0, toppedUpMicros: 0 }]).map((b) => ({
    currency: b.currency,
    total_balance: formatAmount(b.grantedMicros + b.toppedUpMicros),
    granted_balance: formatAmount(b.grantedMicros),
    topped_up_balance: formatAmount(b.toppedUpMicros),
  }));
  const isAvailable = balances.some((b) => b.grantedMicros + b.toppedUpMicros > 0);
  return c.json({ is_available: isAvailable, balance_infos: infos });
});

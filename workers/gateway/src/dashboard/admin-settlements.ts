// Operator: the settlement queue's dead letters (billing/settlement-queue.ts), each a served
// request whose money has not arrived, and settling one again once its cause is fixed. Settling
// is by request id, so a dead letter that did land meanwhile is not charged twice.
import { Hono } from "hono";
import type { Settlement } from "../billing/settlement";
import { ledgerFor } from "../stubs";
import type { DashboardAppEnv } from "./env";
import { notFoundHere } from "./errors";

interface DeadSettlementRow {
  request_id: string;
  account_id: string;
  settlement: string;
  attempts: number;
  dead_at: number;
  resettled_at: number | null;
}

const toJson = (row: DeadSettlementRow) => ({ ...row, settlement: JSON.parse(row.settlement) as Settlement });

export const adminSettlementRoutes = new Hono<DashboardAppEnv>()
  .get("/dead-settlements", async (c) => {
    const { results } = await c.env.DB.prepare(
      "SELECT * FROM dead_settlements ORDER BY resettled_at IS NOT NULL, dead_at DESC LIMIT 200",
    ).all<DeadSettlementRow>();
    return c.json({ data: results.map(toJson) });
  })
  .post("/dead-settlements/:id/resettle", async (c) => {
    const requestId = c.req.param("id");
    const row = await c.env.DB.prepare("SELECT * FROM dead_settlements WHERE request_id = ?").bind(requestId).first<DeadSettlementRow>();
    if (!row) throw notFoundHere(`dead settlement ${requestId}`);
    const settlement = JSON.parse(row.settlement) as Settlement;
    const result = await ledgerFor(c.env, settlement.accountId).settle(settlement);
    await c.env.DB.prepare("UPDATE dead_settlements SET resettled_at = ? WHERE request_id = ? AND resettled_at IS NULL").bind(Date.now(), requestId).run();
    return c.json({ request_id: requestId, cost_micros: result.costMicros, duplicate: result.duplicate });
  });

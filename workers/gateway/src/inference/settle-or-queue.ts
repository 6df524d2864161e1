// settle: the ledger charges a finished request exactly once by its id. A few quick retries
// cover a ledger restarting; past them the settlement goes to the settlement queue
// (billing/settlement-queue.ts), which keeps trying for about an hour and then dead-letters it
// where operators see it, so a served request's money is never left in an isolate that may die.
import type { Settlement } from "../billing/settlement";
import type { Env } from "../env";
import { ledgerFor } from "../stubs";
import { withRetries } from "./timers";

export async function settleOrQueue(env: Env, settlement: Settlement): Promise<"settled" | "queued"> {
  try {
    await withRetries(() => ledgerFor(env, settlement.accountId).settle(settlement));
    return "settled";
  } catch (err) {
    console.error(`request ${settlement.requestId}: the ledger did not settle; queued`, err);
    await env.SETTLEMENTS.send(settlement);
    return "queued";
  }
}

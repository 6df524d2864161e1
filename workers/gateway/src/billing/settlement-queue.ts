// The settlement queue (wrangler.toml [[queues]]): settlements the pipeline could not hand to
// the account's ledger (unreachable, restarting, throwing) wait here instead of in an isolate
// that may die. The consumer settles each by request id, so a redelivered or repeated one is
// charged once (the ledger recognises it). A settlement still failing after max_retries moves to
// the dead-letter queue, whose consumer records it in D1 (dead_settlements) for operators:
// `npm run admin -- dead-settlements`.
import type { Env } from "../env";
import { ledgerFor } from "../stubs";
import type { Settlement } from "./settlement";

// The dead-letter queue's name is the settlement queue's with this suffix (wrangler.toml).
const DEAD_LETTER_SUFFIX = "-dlq";
const RETRY_MAX_SECONDS = 300;

export function settlementQueueConsumer(batch: MessageBatch<Settlement>, env: Env): Promise<void> {
  return batch.queue.endsWith(DEAD_LETTER_SUFFIX) ? recordDeadSettlements(batch, env) : settleQueued(batch, env);
}

async function settleQueued(batch: MessageBatch<Settlement>, env: Env): Promise<void> {
  await Promise.all(
    batch.messages.map(async (message) => {
      const settlement = message.body;
      try {
        await ledgerFor(env, settlement.accountId).settle(settlement);
        message.ack();
      } catch (err) {
        // Backs off 1 s, 2 s, 4 s ... while the ledger is away.
        const delaySeconds = Math.min(RETRY_MAX_SECONDS, 2 ** Math.max(0, message.attempts - 1));
        console.error(`settlement ${settlement.requestId}: queued settle failed (attempt ${message.attempts}); retrying in ${delaySeconds} s`, err);
        message.retry({ delaySeconds });
      }
    }),
  );
}

// Kept once per request id; the first record of a request wins.
async function recordDeadSettlements(batch: MessageBatch<Settlement>, env: Env): Promise<void> {
  const now = Date.now();
  await env.DB.batch(
    batch.messages.map((message) =>
      env.DB.prepare("INSERT OR IGNORE INTO dead_settlements (request_id, account_id, settlement, attempts, dead_at) VALUES (?, ?, ?, ?, ?)").bind(
        message.body.requestId,
        message.body.accountId,
        JSON.stringify(message.body),
        message.attempts,
        now,
      ),
    ),
  );
  for (const message of batch.messages) console.error(`settlement ${message.body.requestId}: dead-lettered, recorded in dead_settlements`);
  batch.ackAll();
}

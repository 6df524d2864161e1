// Settlement batches: settlements arriving within SETTLE_GATHER_MS are settled in one
// synchronous pass and one storage transaction, each balance touched written once and the
// batch's usage rows stored as ONE outbox row holding them all as a JSON array (each SQL
// statement has a fixed cost that, paid two or three times per request, was a tenth of the
// gateway's CPU). While a commit is unconfirmed the ledger's answers wait (the output gate), so
// one commit per batch instead of one per request keeps reserve() answers off the disk path.
// Each settle() answers once its batch is committed; until then its hold keeps its money.
import type { SettleResult } from "./settlement";

// Each storage commit (and the D1 delivery after it) costs the runtime about as much CPU as a
// whole request; settle() is not on any client's path (it runs after the response ended), so
// its batches are long: 20 ms -> 100 ms cut the gateway's CPU per request by ~12% under load.
const SETTLE_GATHER_MS = 100;
// Settled request ids are remembered in memory this long (a retried settlement comes within
// seconds); after that, or after a restart, the outbox and D1's usage_records answer.
const SETTLED_MEMORY_MS = 10 * 60_000;

// The writes of one batch: the settled request ids with what they were charged, and their rows.
export class SettleBatch {
  private readonly costs = new Map<string, number>();
  private readonly rows: string[] = [];

  // What a request settled earlier in this batch was charged (not in storage yet).
  costOf(requestId: string): number | null {
    return this.costs.get(requestId) ?? null;
  }

  // `usageRow`: the UsageRow as JSON.
  add(requestId: string, costMicros: number, usageRow: string): void {
    this.costs.set(requestId, costMicros);
    this.rows.push(usageRow);
  }

  settled(): Iterable<[string, number]> {
    return this.costs.entries();
  }

  store(sql: SqlStorage): void {
    if (this.rows.length > 0) sql.exec("INSERT INTO usage_outbox (rows) VALUES (?)", `[${this.rows.join(",")}]`);
  }
}

type Work = (batch: SettleBatch) => SettleResult;

export class SettleBatches {
  private queue: { work: Work; resolve(result: SettleResult): void; reject(err: unknown): void }[] = [];
  // Request ids settled lately, with what each was charged and when (insertion order = time).
  private readonly settled = new Map<string, { cost: number; at: number }>();

  // `commit`: runs a batch's work and stores its balances in one storage transaction (rolled
  // back, balances in memory included, when it throws).
  constructor(private readonly commit: (write: (batch: SettleBatch) => SettleResult[]) => { done: SettleResult[]; batch: SettleBatch }) {}

  // `work` runs without awaiting, inside the batch's transaction.
  add(work: Work): Promise<SettleResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ work, resolve, reject });
      if (this.queue.length === 1) setTimeout(() => this.runNow(), SETTLE_GATHER_MS);
    });
  }

  // Also run early by a balance read, which must include every settlement already received. A
  // failure rolls the whole batch back; its callers retry.
  runNow(): void {
    const queued = this.queue;
    this.queue = [];
    if (queued.length === 0) return;
    let committed: { done: SettleResult[]; batch: SettleBatch };
    try {
      committed = this.commit((batch) => queued.map((item) => item.work(batch)));
    } catch (err) {
      for (const item of queued) item.reject(err);
      return;
    }
    this.remember(committed.batch.settled());
    queued.forEach((item, i) => item.resolve(committed.done[i]!));
  }

  // What a request settled lately was charged; null when not remembered.
  settledCost(requestId: string): number | null {
    return this.settled.get(requestId)?.cost ?? null;
  }

  private remember(settlements: Iterable<[string, number]>): void {
    const now = Date.now();
    for (const [requestId, cost] of settlements) this.settled.set(requestId, { cost, at: now });
    for (const [requestId, { at }] of this.settled) {
      if (at >= now - SETTLED_MEMORY_MS) break;
      this.settled.delete(requestId);
    }
  }
}

// The outbox: usage rows of committed settlements on their way to D1 (usage-records.ts). A
// settlement batch stores its rows in the same storage transaction as its charges, so a row
// can never be lost or written without its charge; delivery to D1 is idempotent and retried
// (from the ledger's alarm) until it succeeds.
import { usageStatements } from "./usage-records";

// Bytes of usage rows per D1 delivery (~400 a row): one JSON parameter, well under D1's limits.
const OUTBOX_DELIVERY_BYTES = 256 * 1024;
const OUTBOX_RETRY_MAX_MS = 5 * 60_000;

const retryDelay = (attempts: number) => Math.min(OUTBOX_RETRY_MAX_MS, 1000 * 2 ** Math.min(attempts, 20));

export class UsageOutbox {
  private flushing: Promise<void> | null = null;
  private flushRequested = false;

  // `retryAt`: a delivery failed; flush again at that time (the ledger's alarm).
  constructor(
    private readonly sql: SqlStorage,
    private readonly db: () => D1Database,
    private readonly retryAt: (at: number) => void,
    private readonly label: () => string,
  ) {}

  // One writer at a time; a caller arriving while a flush runs gets a flush that starts after
  // its row was committed. Failures stay in the outbox for the alarm to retry.
  flush(): Promise<void> {
    if (this.flushing) {
      this.flushRequested = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      try {
        do {
          this.flushRequested = false;
          while (await this.flushOnce());
        } while (this.flushRequested);
      } finally {
        this.flushing = null;
      }
    })();
    return this.flushing;
  }

  // What a settlement still waiting here charged (after a restart, the ledger's memory is gone).
  pendingCost(requestId: string): number | null {
    return (
      this.sql
        .exec<{ cost: number }>(
          "SELECT r.value ->> 'costMicros' AS cost FROM usage_outbox AS o, json_each(o.rows) AS r WHERE r.value ->> 'requestId' = ?",
          requestId,
        )
        .toArray()[0]?.cost ?? null
    );
  }

  // When the alarm should retry undelivered rows; null when there are none.
  nextRetry(now: number): number | null {
    const attempts = this.sql.exec<{ attempts: number | null }>("SELECT MAX(attempts) AS attempts FROM usage_outbox").one().attempts;
    return attempts === null ? null : now + retryDelay(attempts);
  }

  // Writes the oldest outbox rows, up to OUTBOX_DELIVERY_BYTES of usage rows, as one D1
  // delivery; true when rows were left behind (there may be more to write).
  private async flushOnce(): Promise<boolean> {
    const oldest = this.sql
      .exec<{ id: number; rows: string; attempts: number }>("SELECT id, rows, attempts FROM usage_outbox ORDER BY id LIMIT 64")
      .toArray();
    if (oldest.length === 0) return false;
    let bytes = 0;
    const pending = oldest.filter((p, i) => (bytes += p.rows.length) <= OUTBOX_DELIVERY_BYTES || i === 0);
    const lastId = pending[pending.length - 1]!.id;
    try {
      // Each outbox row is a JSON array; the delivery is one array of all their rows.
      await this.db().batch(usageStatements(this.db(), `[${pending.map((p) => p.rows.slice(1, -1)).join(",")}]`));
    } catch (err) {
      const attempts = Math.max(...pending.map((p) => p.attempts)) + 1;
      this.sql.exec("UPDATE usage_outbox SET attempts = attempts + 1 WHERE id <= ?", lastId);
      console.error(`ledger ${this.label()}: writing usage rows to D1 failed (attempt ${attempts}); retrying from the alarm`, err);
      this.retryAt(Date.now() + retryDelay(attempts));
      return false;
    }
    // The delivery is the oldest rows: everything up to its last id (rows added since come after).
    this.sql.exec("DELETE FROM usage_outbox WHERE id <= ?", lastId);
    return pending.length < oldest.length || oldest.length === 64;
  }
}

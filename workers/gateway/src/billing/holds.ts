// Holds (reservations): the worst-case cost of each request in flight, keyed by request id. A
// request is admitted only when the spendable balance minus every open hold covers its worst
// case, so concurrent requests can never spend the balance below zero.
//
// Holds live in memory and reach storage only once they have lasted HOLD_PERSIST_AFTER_MS: most
// requests settle sooner, and a hold written on the request path would hold back the reserve
// answer until storage confirms the write (a Durable Object's output gate), on every request.
// A hold that lasts (a long generation, a request whose gateway died) is in storage well before
// anything could evict the ledger. A ledger that crashes loses the holds younger than that;
// their requests still settle, charged at most what no other hold needs, so a balance never
// goes below zero.
//
// A hold lapses HOLD_TTL_MS after it was made or last extended: the pipeline extends it while
// its stream is alive (a heartbeat), so only a request nothing is heard from (a crashed
// gateway) lets its money go.
export const HOLD_PERSIST_AFTER_MS = 1_000;
// Without a heartbeat, longer than any request can run: 10 minutes of queueing plus the longest
// completion.
export const HOLD_TTL_MS = 60 * 60_000;

interface Hold {
  amount: number;
  expiresAt: number;
  createdAt: number;
  stored: boolean;
}

export class Holds {
  private readonly holds = new Map<string, Hold>();
  private held = 0;
  private writeAt: number | null = null;

  // `onStored`: holds reached storage; the earliest expiry among them (for the alarm).
  constructor(
    private readonly sql: SqlStorage,
    private readonly onStored: (earliestExpiry: number) => void,
  ) {
    for (const r of sql.exec<{ request_id: string; amount: number; expires_at: number }>("SELECT request_id, amount, expires_at FROM reservations")) {
      this.holds.set(r.request_id, { amount: r.amount, expiresAt: r.expires_at, createdAt: 0, stored: true });
      this.held += r.amount;
    }
  }

  amount(requestId: string): number | undefined {
    return this.holds.get(requestId)?.amount;
  }

  // Everything held by open holds.
  get reserved(): number {
    return this.held;
  }

  add(requestId: string, amountMicros: number, ttlMs: number, now: number): void {
    this.holds.set(requestId, { amount: amountMicros, expiresAt: now + ttlMs, createdAt: now, stored: false });
    this.held += amountMicros;
    this.storeBy(now + HOLD_PERSIST_AFTER_MS);
  }

  // The request is still alive: its hold lapses `ttlMs` from now. False when it has no hold
  // (settled, released, or lapsed already).
  extend(requestId: string, ttlMs: number, now: number): boolean {
    const hold = this.holds.get(requestId);
    if (!hold) return false;
    hold.expiresAt = Math.max(hold.expiresAt, now + ttlMs);
    if (hold.stored) this.sql.exec("UPDATE reservations SET expires_at = ? WHERE request_id = ?", hold.expiresAt, requestId);
    return true;
  }

  release(requestId: string): void {
    const hold = this.holds.get(requestId);
    if (hold?.stored !== false) this.sql.exec("DELETE FROM reservations WHERE request_id = ?", requestId);
    if (hold) this.forget(requestId, hold);
  }

  // Releases the holds whose time has passed (nothing was heard from their requests).
  releaseExpired(now: number): void {
    for (const [requestId, hold] of this.holds) if (hold.expiresAt <= now) this.forget(requestId, hold);
    this.sql.exec("DELETE FROM reservations WHERE expires_at <= ?", now); // storage's copies, in one statement
  }

  earliestStoredExpiry(): number | null {
    return this.sql.exec<{ at: number | null }>("SELECT MIN(expires_at) AS at FROM reservations").one().at;
  }

  private forget(requestId: string, hold: Hold): void {
    this.holds.delete(requestId);
    this.held -= hold.amount;
  }

  // Holds reach storage once they have lasted HOLD_PERSIST_AFTER_MS; one timer covers them all.
  private storeBy(at: number): void {
    if (this.writeAt !== null && this.writeAt <= at) return;
    this.writeAt = at;
    setTimeout(() => {
      if (this.writeAt !== at) return; // superseded by an earlier one
      this.writeAt = null;
      const { earliestExpiry, nextDue } = this.storeMadeBy(Date.now() - HOLD_PERSIST_AFTER_MS);
      if (earliestExpiry !== null) this.onStored(earliestExpiry);
      if (nextDue !== null) this.storeBy(nextDue);
    }, Math.max(0, at - Date.now()));
  }

  // Writes the holds made at or before `madeBy` that storage does not have yet. Returns the
  // earliest expiry among them and when the next unwritten hold comes due (null: none).
  private storeMadeBy(madeBy: number): { earliestExpiry: number | null; nextDue: number | null } {
    let earliestExpiry: number | null = null;
    let nextDue: number | null = null;
    for (const [requestId, hold] of this.holds) {
      if (hold.stored) continue;
      if (hold.createdAt > madeBy) {
        nextDue = Math.min(nextDue ?? Infinity, hold.createdAt + HOLD_PERSIST_AFTER_MS);
        continue;
      }
      this.sql.exec("INSERT OR REPLACE INTO reservations (request_id, amount, expires_at) VALUES (?, ?, ?)", requestId, hold.amount, hold.expiresAt);
      hold.stored = true;
      earliestExpiry = Math.min(earliestExpiry ?? Infinity, hold.expiresAt);
    }
    return { earliestExpiry, nextDue };
  }
}

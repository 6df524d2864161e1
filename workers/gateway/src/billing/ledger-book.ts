// The ledger's balances in memory: granted lots and topped-up credit of the ledger currency, and
// the holds (reservations) of requests in flight, as every reserve and settle reads them.
//
// Balances: storage is the record; the ledger is its only writer. A charge changes memory at
// once and storage at `storeBalances()`, which the ledger calls at the end of the same
// synchronous section (one settlement batch): one UPDATE per lot the batch touched, not one per
// request. After a bulk change in storage (credits folded in, the alarm's clean-up, a failed
// transaction) the ledger calls `reloadBalances()`.
//
// Holds live in memory and reach storage only once they have lasted HOLD_PERSIST_AFTER_MS: most
// requests settle sooner, and a hold written on the request path would hold back the reserve
// answer until storage confirms the write (a Durable Object's output gate), on every request.
// A hold that lasts (a long generation, a request whose gateway died) is in storage well before
// anything could evict the ledger, so the alarm can release it after its time-to-live. A ledger
// that crashes loses the holds younger than that; their requests still settle, charged at most
// what no other hold needs, so a balance never goes below zero.
export const LEDGER_CURRENCY = "USD";
export const HOLD_PERSIST_AFTER_MS = 1_000;

interface Lot {
  creditId: number;
  remaining: number;
  expiresAt: number | null;
  changed: boolean; // since the last storeBalances()
}

interface Hold {
  amount: number;
  expiresAt: number;
  createdAt: number;
  stored: boolean;
}

export class LedgerBook {
  private lots: Lot[] = [];
  private toppedUp = 0;
  private toppedUpChanged = false;
  private readonly holds = new Map<string, Hold>();
  private held = 0;
  // Request ids settled lately, with what each was charged and when (insertion order = time).
  private readonly settled = new Map<string, { cost: number; at: number }>();

  private constructor(private readonly sql: SqlStorage) {}

  static read(sql: SqlStorage): LedgerBook {
    const book = new LedgerBook(sql);
    book.reloadBalances();
    for (const r of sql.exec<{ request_id: string; amount: number; expires_at: number }>("SELECT request_id, amount, expires_at FROM reservations")) {
      book.holds.set(r.request_id, { amount: r.amount, expiresAt: r.expires_at, createdAt: 0, stored: true });
      book.held += r.amount;
    }
    return book;
  }

  reloadBalances(): void {
    this.lots = this.sql
      .exec<{ credit_id: number; remaining: number; expires_at: number | null }>(
        // In spending order: soonest expiry first, never-expiring last, then by credit id.
        `SELECT credit_id, remaining, expires_at FROM grants
          WHERE currency = ? AND remaining > 0 ORDER BY expires_at IS NULL, expires_at, credit_id`,
        LEDGER_CURRENCY,
      )
      .toArray()
      .map((r) => ({ creditId: r.credit_id, remaining: r.remaining, expiresAt: r.expires_at, changed: false }));
    this.toppedUpChanged = false;
    this.toppedUp = this.sql.exec<{ amount: number }>("SELECT amount FROM topped_up WHERE currency = ?", LEDGER_CURRENCY).toArray()[0]?.amount ?? 0;
  }

  // Granted credit not expired at `now` plus topped-up credit.
  spendable(now: number): number {
    let total = this.toppedUp;
    for (const lot of this.lots) if (lot.expiresAt === null || lot.expiresAt > now) total += lot.remaining;
    return total;
  }

  reservation(requestId: string): number | undefined {
    return this.holds.get(requestId)?.amount;
  }

  get reserved(): number {
    return this.held;
  }

  reserve(requestId: string, amountMicros: number, expiresAt: number, now: number): void {
    this.holds.set(requestId, { amount: amountMicros, expiresAt, createdAt: now, stored: false });
    this.held += amountMicros;
  }

  release(requestId: string): void {
    const hold = this.holds.get(requestId);
    if (hold?.stored !== false) this.sql.exec("DELETE FROM reservations WHERE request_id = ?", requestId);
    if (hold) this.forget(requestId, hold);
  }

  private forget(requestId: string, hold: Hold): void {
    this.holds.delete(requestId);
    this.held -= hold.amount;
  }

  // Writes the holds made at or before `madeBy` that storage does not have yet. Returns the
  // earliest expiry among them and when the next unwritten hold comes due (null: none).
  storeHolds(madeBy: number): { earliestExpiry: number | null; nextDue: number | null } {
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

  // Releases the holds whose time-to-live has passed (their requests never settled).
  releaseExpired(now: number): void {
    for (const [requestId, hold] of this.holds) if (hold.expiresAt <= now) this.forget(requestId, hold);
    this.sql.exec("DELETE FROM reservations WHERE expires_at <= ?", now); // storage's copies, in one statement
  }

  settledCost(requestId: string): number | null {
    return this.settled.get(requestId)?.cost ?? null;
  }

  // Remembers a committed batch's settlements and forgets those settled before `forgetBefore`.
  rememberSettled(settlements: Iterable<[string, number]>, forgetBefore: number): void {
    const now = Date.now();
    for (const [requestId, cost] of settlements) this.settled.set(requestId, { cost, at: now });
    for (const [requestId, { at }] of this.settled) {
      if (at >= forgetBefore) break;
      this.settled.delete(requestId);
    }
  }

  // Takes up to `costMicros`: granted credit first (the one expiring soonest first), then
  // topped-up. Never more than this request's reservation plus what no other open reservation
  // holds, so every other request in flight stays covered. Returns what was taken. Storage gets
  // the new balances at storeBalances().
  charge(requestId: string, costMicros: number, now: number): number {
    const othersReserved = this.held - (this.holds.get(requestId)?.amount ?? 0);
    let left = Math.min(costMicros, Math.max(0, this.spendable(now) - othersReserved));
    const charged = left;
    for (const lot of this.lots) {
      if (left === 0) break;
      if (lot.remaining === 0 || (lot.expiresAt !== null && lot.expiresAt <= now)) continue;
      const take = Math.min(left, lot.remaining);
      lot.remaining -= take;
      lot.changed = true;
      left -= take;
    }
    if (left > 0) {
      this.toppedUp -= left;
      this.toppedUpChanged = true;
    }
    return charged;
  }

  // Writes the balances charged since the last call.
  storeBalances(): void {
    for (const lot of this.lots) {
      if (!lot.changed) continue;
      this.sql.exec("UPDATE grants SET remaining = ? WHERE credit_id = ?", lot.remaining, lot.creditId);
      lot.changed = false;
    }
    if (this.toppedUpChanged) {
      this.sql.exec("UPDATE topped_up SET amount = ? WHERE currency = ?", this.toppedUp, LEDGER_CURRENCY);
      this.toppedUpChanged = false;
    }
  }
}

// The ledger's balances in memory: granted lots, topped-up credit and open reservations of the
// ledger currency, as the checks of every reserve and settle read them. Storage stays the
// record; the ledger is its only writer, and every write here goes to both, inside the
// ledger's synchronous sections. Bulk changes (credits folded in, the alarm's clean-up) make
// the ledger drop its book and read a fresh one from storage.
export const LEDGER_CURRENCY = "USD";

interface Lot {
  creditId: number;
  remaining: number;
  expiresAt: number | null;
}

export class LedgerBook {
  private constructor(
    private readonly sql: SqlStorage,
    // In spending order: soonest expiry first, never-expiring last, then by credit id.
    private readonly lots: Lot[],
    private toppedUp: number,
    private readonly reservations: Map<string, number>,
    private reservedTotal: number,
  ) {}

  static read(sql: SqlStorage): LedgerBook {
    const lots = sql
      .exec<{ credit_id: number; remaining: number; expires_at: number | null }>(
        `SELECT credit_id, remaining, expires_at FROM grants
          WHERE currency = ? AND remaining > 0 ORDER BY expires_at IS NULL, expires_at, credit_id`,
        LEDGER_CURRENCY,
      )
      .toArray()
      .map((r) => ({ creditId: r.credit_id, remaining: r.remaining, expiresAt: r.expires_at }));
    const toppedUp = sql.exec<{ amount: number }>("SELECT amount FROM topped_up WHERE currency = ?", LEDGER_CURRENCY).toArray()[0]?.amount ?? 0;
    const reservations = new Map<string, number>();
    let reserved = 0;
    for (const r of sql.exec<{ request_id: string; amount: number }>("SELECT request_id, amount FROM reservations")) {
      reservations.set(r.request_id, r.amount);
      reserved += r.amount;
    }
    return new LedgerBook(sql, lots, toppedUp, reservations, reserved);
  }

  // Granted credit not expired at `now` plus topped-up credit.
  spendable(now: number): number {
    let total = this.toppedUp;
    for (const lot of this.lots) if (lot.expiresAt === null || lot.expiresAt > now) total += lot.remaining;
    return total;
  }

  reservation(requestId: string): number | undefined {
    return this.reservations.get(requestId);
  }

  get reserved(): number {
    return this.reservedTotal;
  }

  reserve(requestId: string, amountMicros: number, expiresAt: number): void {
    this.sql.exec("INSERT INTO reservations (request_id, amount, expires_at) VALUES (?, ?, ?)", requestId, amountMicros, expiresAt);
    this.reservations.set(requestId, amountMicros);
    this.reservedTotal += amountMicros;
  }

  release(requestId: string): void {
    this.sql.exec("DELETE FROM reservations WHERE request_id = ?", requestId);
    const amount = this.reservations.get(requestId);
    if (amount === undefined) return;
    this.reservations.delete(requestId);
    this.reservedTotal -= amount;
  }

  // Takes up to `costMicros`: granted credit first (the one expiring soonest first), then
  // topped-up. Never more than this request's reservation plus what no other open reservation
  // holds, so every other request in flight stays covered. Returns what was taken.
  charge(requestId: string, costMicros: number, now: number): number {
    const othersReserved = this.reservedTotal - (this.reservations.get(requestId) ?? 0);
    let left = Math.min(costMicros, Math.max(0, this.spendable(now) - othersReserved));
    const charged = left;
    for (const lot of this.lots) {
      if (left === 0) break;
      if (lot.remaining === 0 || (lot.expiresAt !== null && lot.expiresAt <= now)) continue;
      const take = Math.min(left, lot.remaining);
      this.sql.exec("UPDATE grants SET remaining = remaining - ? WHERE credit_id = ?", take, lot.creditId);
      lot.remaining -= take;
      left -= take;
    }
    if (left > 0) {
      this.sql.exec("UPDATE topped_up SET amount = amount - ? WHERE currency = ?", left, LEDGER_CURRENCY);
      this.toppedUp -= left;
    }
    return charged;
  }
}

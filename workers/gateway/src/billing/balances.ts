// The account's balances in memory: granted lots and topped-up credit of the ledger currency.
// Storage is the record and the ledger its only writer: a charge changes memory at once and
// storage at `store()`, which the ledger calls at the end of the same synchronous section (one
// settlement batch): one UPDATE per lot the batch touched, not one per request. After a bulk
// change in storage (credits folded in, the alarm's clean-up, a failed transaction) the ledger
// calls `reload()`.
export const LEDGER_CURRENCY = "USD";

export interface BalanceSnapshot {
  currency: string;
  grantedMicros: number;
  toppedUpMicros: number;
  // Held by requests in flight; part of the balance above until they settle.
  reservedMicros: number;
}

interface Lot {
  creditId: number;
  remaining: number;
  expiresAt: number | null;
  changed: boolean; // since the last store()
}

export class Balances {
  private lots: Lot[] = [];
  private toppedUp = 0;
  private toppedUpChanged = false;

  constructor(private readonly sql: SqlStorage) {
    this.reload();
  }

  reload(): void {
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

  // Takes up to `costMicros`: granted credit first (the one expiring soonest first), then
  // topped-up; never what `heldForOthers` (the other open holds) needs, so every other request in
  // flight stays covered. Returns what was taken.
  charge(costMicros: number, heldForOthers: number, now: number): number {
    let left = Math.min(costMicros, Math.max(0, this.spendable(now) - heldForOthers));
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
  store(): void {
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

  // Every currency's balances as storage holds them (store() has run: settlement batches commit
  // their balances), with `reservedMicros` held in the ledger currency.
  snapshot(now: number, reservedMicros: number): BalanceSnapshot[] {
    const byCurrency = new Map<string, BalanceSnapshot>();
    const entry = (currency: string) => {
      let e = byCurrency.get(currency);
      if (!e) byCurrency.set(currency, (e = { currency, grantedMicros: 0, toppedUpMicros: 0, reservedMicros: 0 }));
      return e;
    };
    for (const g of this.sql.exec<{ currency: string; total: number }>(
      "SELECT currency, SUM(remaining) AS total FROM grants WHERE expires_at IS NULL OR expires_at > ? GROUP BY currency",
      now,
    ))
      entry(g.currency).grantedMicros = g.total;
    for (const t of this.sql.exec<{ currency: string; amount: number }>("SELECT currency, amount FROM topped_up")) entry(t.currency).toppedUpMicros = t.amount;
    if (reservedMicros > 0) entry(LEDGER_CURRENCY).reservedMicros = reservedMicros;
    return [...byCurrency.values()].sort((a, b) => a.currency.localeCompare(b.currency));
  }

  // Expired and spent lots leave storage (the alarm's clean-up); memory is read again.
  dropSpentAndExpired(now: number): void {
    this.sql.exec("DELETE FROM grants WHERE remaining = 0 OR expires_at <= ?", now);
    this.reload();
  }
}

// Credits (grants, top-ups) arrive as an append-only log in D1 (balance_credits) and are folded
// into the ledger's balances by id, each at most once. Granted credit is kept per credit so that
// it can expire; topped-up credit never expires.
interface CreditRow {
  id: number;
  kind: "granted" | "topped_up";
  currency: string;
  amount_micros: number;
  expires_at: number | null;
}

export class CreditSync {
  private syncing: Promise<void> | null = null;

  // `folded`: balances changed in storage in bulk (the ledger reads them again).
  constructor(
    private readonly storage: DurableObjectStorage,
    private readonly db: () => D1Database,
    private readonly folded: () => void,
  ) {}

  // Folds credits written to D1 since the last sync into the balances. Concurrent callers share
  // one read, and each credit id is applied at most once even if two reads overlap.
  sync(accountId: string): Promise<void> {
    this.syncing ??= this.readAndFold(accountId).finally(() => {
      this.syncing = null;
    });
    return this.syncing;
  }

  private lastCreditId(): number {
    const row = this.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'last_credit_id'").toArray()[0];
    return row ? Number(row.value) : 0;
  }

  private async readAndFold(accountId: string): Promise<void> {
    const { results } = await this.db()
      .prepare("SELECT id, kind, currency, amount_micros, expires_at FROM balance_credits WHERE account_id = ? AND id > ? ORDER BY id")
      .bind(accountId, this.lastCreditId())
      .all<CreditRow>();
    if (results.length === 0) return;
    this.storage.transactionSync(() => {
      let last = this.lastCreditId();
      for (const credit of results) {
        if (credit.id <= last) continue;
        this.apply(credit);
        last = credit.id;
      }
      this.storage.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_credit_id', ?)", String(last));
    });
    this.folded();
  }

  // A negative amount (an operator's correction) takes from the same kind of balance, never below zero.
  private apply(credit: CreditRow): void {
    const sql = this.storage.sql;
    if (credit.kind === "topped_up") {
      sql.exec("INSERT OR IGNORE INTO topped_up (currency, amount) VALUES (?, 0)", credit.currency);
      sql.exec("UPDATE topped_up SET amount = MAX(0, amount + ?) WHERE currency = ?", credit.amount_micros, credit.currency);
      return;
    }
    if (credit.amount_micros >= 0) {
      sql.exec(
        "INSERT OR IGNORE INTO grants (credit_id, currency, remaining, expires_at) VALUES (?, ?, ?, ?)",
        credit.id,
        credit.currency,
        credit.amount_micros,
        credit.expires_at,
      );
      return;
    }
    let left = -credit.amount_micros;
    const lots = sql
      .exec<{ credit_id: number; remaining: number }>(
        "SELECT credit_id, remaining FROM grants WHERE currency = ? AND remaining > 0 ORDER BY expires_at IS NULL, expires_at, credit_id",
        credit.currency,
      )
      .toArray();
    for (const lot of lots) {
      const take = Math.min(left, lot.remaining);
      sql.exec("UPDATE grants SET remaining = remaining - ? WHERE credit_id = ?", take, lot.credit_id);
      left -= take;
      if (left === 0) break;
    }
  }
}

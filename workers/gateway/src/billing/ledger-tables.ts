// The ledger's own storage (SQLite inside its Durable Object), and the account it belongs to.
//   meta          account_id, last_credit_id
//   grants        granted credit lots (balances.ts)     topped_up  topped-up credit (balances.ts)
//   reservations  holds that lasted (holds.ts)          usage_outbox  settled rows for D1 (usage-outbox.ts)
export function createLedgerTables(sql: SqlStorage): void {
  sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
  sql.exec(`CREATE TABLE IF NOT EXISTS grants (
    credit_id INTEGER PRIMARY KEY, currency TEXT NOT NULL, remaining INTEGER NOT NULL, expires_at INTEGER)`);
  sql.exec(`CREATE TABLE IF NOT EXISTS topped_up (currency TEXT PRIMARY KEY, amount INTEGER NOT NULL)`);
  sql.exec(`CREATE TABLE IF NOT EXISTS reservations (
    request_id TEXT PRIMARY KEY, amount INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
  // One row per settlement batch: `rows` is a JSON array of its usage rows (UsageRow).
  sql.exec(`CREATE TABLE IF NOT EXISTS usage_outbox (
    id INTEGER PRIMARY KEY, rows TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)`);
  moveOldOutbox(sql);
}

// Storage written before usage_outbox: an outbox row per request, and settled ids kept on disk
// (now in memory, see settlements.ts). Their undelivered rows become one usage_outbox row.
export function moveOldOutbox(sql: SqlStorage): void {
  const old = sql.exec<{ n: number }>("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").one().n;
  if (old > 0) {
    sql.exec(
      "INSERT INTO usage_outbox (rows, attempts) SELECT '[' || group_concat(row, ',') || ']', max(attempts) FROM outbox HAVING count(*) > 0",
    );
    sql.exec("DROP TABLE outbox");
  }
  sql.exec("DROP TABLE IF EXISTS settlements");
}

// A ledger is named after its account; storage confirms it once, so a ledger can never be
// called for another account's money.
export class AccountBinding {
  private boundTo: string | null = null;

  constructor(private readonly sql: SqlStorage) {}

  bind(accountId: string): void {
    if (this.boundTo === accountId) return;
    const bound = this.id();
    if (bound === null) this.sql.exec("INSERT INTO meta (key, value) VALUES ('account_id', ?)", accountId);
    else if (bound !== accountId) throw new Error(`ledger of ${bound} called for ${accountId}`);
    this.boundTo = accountId;
  }

  id(): string | null {
    return this.boundTo ?? this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'account_id'").toArray()[0]?.value ?? null;
  }
}

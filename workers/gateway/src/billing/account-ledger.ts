// The account ledger: one Durable Object per account, the only writer of its balances.
// Credits (grants, top-ups) arrive as an append-only log in D1 and are folded in by id.
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";

export interface BalanceSnapshot {
  currency: string;
  grantedMicros: number;
  toppedUpMicros: number;
}

export class AccountLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS balances (
      currency TEXT PRIMARY KEY, granted INTEGER NOT NULL DEFAULT 0, topped_up INTEGER NOT NULL DEFAULT 0)`);
  }

  private lastCreditId(): number {
    const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'last_credit_id'").toArray()[0];
    return row ? Number(row.value) : 0;
  }

  // Folds credits written to D1 since the last sync into the balances.
  async syncCredits(accountId: string): Promise<void> {
    const { results } = await this.env.DB.prepare(
      "SELECT id, kind, currency, amount_micros FROM balance_credits WHERE account_id = ? AND id > ? ORDER BY id",
    )
      .bind(accountId, this.lastCreditId())
      .all<{ id: number; kind: "granted" | "topped_up"; currency: string; amount_micros: number }>();
    if (results.length === 0) return;
    this.ctx.storage.transactionSync(() => {
      for (const credit of results) {
        const column = credit.kind === "granted" ? "granted" : "topped_up";
        this.sql.exec("INSERT OR IGNORE INTO balances (currency) VALUES (?)", credit.currency);
        this.sql.exec(`UPDATE balances SET ${column} = ${column} + ? WHERE currency = ?`, credit.amount_micros, credit.currency);
        this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_credit_id', ?)", String(credit.id));
      }
    });
  }

  async balances(accountId: string): Promise<BalanceSnapshot[]> {
    await this.syncCredits(accountId);
    return this.sql
      .exec<{ currency: string; granted: number; topped_up: number }>("SELECT currency, granted, topped_up FROM balances ORDER BY currency")
      .toArray()
      .map((row) => ({ currency: row.currency, grantedMicros: row.granted, toppedUpMicros: row.topped_up }));
  }
}

export function ledgerFor(env: Env, accountId: string) {
  return env.LEDGER.get(env.LEDGER.idFromName(accountId));
}

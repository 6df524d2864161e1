// The writes of one settlement batch (account-ledger.ts): the settled request ids with what they
// were charged, and their usage rows. The rows are stored at the end of the batch's storage
// transaction as ONE outbox row holding them all as a JSON array: each SQL statement has a fixed
// cost that, paid two or three times per request, was a tenth of the gateway's CPU.
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

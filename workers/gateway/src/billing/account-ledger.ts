// The account ledger: one Durable Object per account, the only writer of its balances.
//
// - Credits (grants, top-ups) arrive as an append-only log in D1 and are folded in by id.
//   Granted credit is kept per credit so that it can expire; topped-up credit never expires.
// - reserve() holds the worst case of a request before it is forwarded; it fits only when the
//   spendable balance minus every open reservation covers it, so concurrent requests can never
//   spend the balance below zero. Balances and holds are read from memory (ledger-book.ts);
//   a hold is written to storage only once it has lasted a second, so the answer to reserve()
//   never waits for a storage write.
// - settle() charges exactly once per request id (granted credit first, earliest expiry first,
//   then topped-up), drops the reservation and records the usage row in an outbox in the same
//   storage transaction; settlements arriving within 100 ms share one transaction and one outbox
//   row (settle-batch.ts). The outbox is written to D1 idempotently and retried from the alarm.
// - A settlement delivered twice is recognised from memory (ids settled in the last
//   SETTLED_MEMORY_MS), else from the outbox, else from D1's usage_records (keyed by request id).
// - The alarm also releases reservations whose request never settled (a crashed gateway),
//   RESERVATION_TTL_MS after they were made.
// - The account's live API keys and rate limits live here too (auth/live-keys.ts,
//   limits/limiter-buckets.ts), so that checking a request's key, admitting it under the
//   account's current limits and holding its money are one call (`reserve` with `keyId` and
//   `admit`), and settle or release finishes its lease: four Durable Object calls per request
//   fewer than separate objects.
import { DurableObject } from "cloudflare:workers";
import { LiveKeys } from "../auth/live-keys";
import type { AuthenticatedKey, Env } from "../env";
import { accountLimits } from "../limits/defaults";
import { persistedLimiter, type AdmitRequest, type AdmitResult, type LimiterBuckets } from "../limits/limiter-buckets";
import { priceUsage, type PriceTier } from "./pricing";
import { normalizeUsage, type Usage } from "./usage";
import { HOLD_PERSIST_AFTER_MS, LEDGER_CURRENCY, LedgerBook } from "./ledger-book";
import { SettleBatch } from "./settle-batch";
import { usageStatements, type UsageRow } from "./usage-records";

export { LEDGER_CURRENCY };
// Longer than any request can run: 10 minutes of queueing plus the longest completion.
export const RESERVATION_TTL_MS = 60 * 60_000;
// Settled request ids are remembered in memory this long (a retried settlement comes within
// seconds); after that, or after a restart, the outbox and D1's usage_records answer.
const SETTLED_MEMORY_MS = 10 * 60_000;
// Bytes of usage rows per D1 delivery (~400 a row): one JSON parameter, well under D1's limits.
const OUTBOX_DELIVERY_BYTES = 256 * 1024;

// Each storage commit (and the D1 delivery after it) costs the runtime about as much CPU as a
// whole request; settle() is not on any client's path (it runs after the response ended), so
// its batches are long: 20 ms -> 100 ms cut the gateway's CPU per request by ~12% under load.
const SETTLE_GATHER_MS = 100;
// Settlements already come in batches (SETTLE_GATHER_MS): their rows go to D1 right after.
const OUTBOX_GATHER_MS = 0;
const OUTBOX_RETRY_MAX_MS = 5 * 60_000;
const MODEL_CACHE_MS = 60_000;

export interface BalanceSnapshot {
  currency: string;
  grantedMicros: number;
  toppedUpMicros: number;
  // Held by requests in flight; part of the balance above until they settle.
  reservedMicros: number;
}

export interface ReserveRequest {
  accountId: string;
  requestId: string;
  amountMicros: number;
  // The request's key, checked first: a key that is not a live key of this account gets
  // `key: null` and nothing else happens.
  keyId?: string;
  // Admit the request under the checked key's current account limits first (tokens: its worst
  // case). Needs `keyId`.
  admit?: { tokens: number };
}

// Not ok with a refused `admission`: rate limited (no money held). Not ok otherwise: the balance
// does not cover the worst case (the admission, if any, is finished: its slot freed, its tokens
// given back; the request still counts against requests per minute). `key`: the checked key
// with its current limits.
export type ReserveResult = { ok: boolean; key?: AuthenticatedKey | null; admission?: AdmitResult };

export type SettlementStatus = "ok" | "aborted" | "failed";

export interface Settlement {
  accountId: string;
  requestId: string;
  keyId: string | null;
  model: string;
  endpoint: string;
  // What was delivered to the client: for an aborted or failed stream, only what was streamed.
  usage: Usage;
  status: SettlementStatus;
  workerId: string | null;
  startedAt: number;
  completedAt: number;
}

export interface SettleResult {
  costMicros: number;
  duplicate: boolean;
}

interface ModelPrices {
  cacheHitPrice: number;
  cacheMissPrice: number;
  outputPrice: number;
  offPeakDiscountPercent: number;
  maxReasoningTokens: number;
}

interface CreditRow {
  id: number;
  kind: "granted" | "topped_up";
  currency: string;
  amount_micros: number;
  expires_at: number | null;
}

export class AccountLedger extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  private syncing: Promise<void> | null = null;
  private flushing: Promise<void> | null = null;
  private flushRequested = false;
  private alarmAt: number | null = null;
  private readonly modelCache = new Map<string, { prices: ModelPrices; fetchedAt: number }>();
  // The account this object belongs to, once storage has confirmed it (it never changes).
  private boundTo: string | null = null;
  // Balances and reservations in memory (billing/ledger-book.ts); null: read from storage.
  private book: LedgerBook | null = null;
  private holdWriteAt: number | null = null;
  private readonly limiter: LimiterBuckets;
  private readonly liveKeys = new LiveKeys(() => this.env.DB);
  private settleQueue: { work: (batch: SettleBatch) => SettleResult; resolve(result: SettleResult): void; reject(err: unknown): void }[] = [];

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.limiter = persistedLimiter(ctx);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS grants (
      credit_id INTEGER PRIMARY KEY, currency TEXT NOT NULL, remaining INTEGER NOT NULL, expires_at INTEGER)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS topped_up (currency TEXT PRIMARY KEY, amount INTEGER NOT NULL)`);
    this.sql.exec(`CREATE TABLE IF NOT EXISTS reservations (
      request_id TEXT PRIMARY KEY, amount INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
    // One row per settlement batch: `rows` is a JSON array of its usage rows (UsageRow).
    this.sql.exec(`CREATE TABLE IF NOT EXISTS usage_outbox (
      id INTEGER PRIMARY KEY, rows TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)`);
    moveOldOutbox(this.sql);
    // Known before the first call, so a new reservation never postpones an earlier alarm.
    void ctx.blockConcurrencyWhile(async () => {
      this.alarmAt = await ctx.storage.getAlarm();
    });
  }

  // ---- RPC ----------------------------------------------------------------------------------

  async reserve({ accountId, requestId, amountMicros, keyId, admit }: ReserveRequest): Promise<ReserveResult> {
    this.bindAccount(accountId);
    if (!Number.isSafeInteger(amountMicros) || amountMicros < 0) throw new Error(`invalid reservation amount ${amountMicros}`);
    const key = keyId === undefined ? undefined : await this.liveKeys.check(accountId, keyId);
    if (key === null) return { ok: false, key };
    if (admit && !key) throw new Error("admission without a key to read the limits of");
    const admission = admit && key ? this.limiter.admit({ requestId, limits: accountLimits(key.limits), tokens: admit.tokens }) : undefined;
    if (admission && !admission.ok) return { ok: false, key, admission };
    let ok = this.tryReserve(requestId, amountMicros);
    if (!ok) {
      // Maybe a top-up arrived since the last sync; look once before refusing.
      await this.syncCredits(accountId);
      ok = this.tryReserve(requestId, amountMicros);
    }
    if (!ok && admission) this.limiter.finish(requestId, 0);
    return { ok, ...(key ? { key } : {}), ...(admission ? { admission } : {}) };
  }

  // The key with its current limits, or null when it is not a live key of this account.
  async checkKey(accountId: string, keyId: string): Promise<AuthenticatedKey | null> {
    this.bindAccount(accountId);
    return this.liveKeys.check(accountId, keyId);
  }

  // A key of this account was revoked or its limits changed (in D1): read them again.
  async keysChanged(): Promise<void> {
    this.liveKeys.changed();
  }

  // The account's rate limits on their own, without a money hold (limits/admit.ts `admit`; the
  // inference pipeline admits within `reserve`).
  async admit(request: AdmitRequest): Promise<AdmitResult> {
    return this.limiter.admit(request);
  }

  async finishAdmission(requestId: string, actualTokens: number): Promise<void> {
    this.limiter.finish(requestId, actualTokens);
  }

  async cancelAdmission(requestId: string): Promise<void> {
    this.limiter.cancel(requestId);
  }

  async settle(settlement: Settlement): Promise<SettleResult> {
    const { accountId, requestId } = settlement;
    this.bindAccount(accountId);
    const usage = normalizeUsage(settlement.usage);
    this.limiter.finish(requestId, usage.promptTokens + usage.completionTokens);
    // A request with an open reservation has not settled: settling drops the reservation in the
    // same transaction, and an id that settled is never reserved again.
    if (this.theBook().reservation(requestId) === undefined) {
      // No reservation: settled already, released as stale, or settled so long ago that the id
      // was forgotten.
      const known = this.theBook().settledCost(requestId) ?? this.pendingCost(requestId);
      if (known !== null) return { costMicros: known, duplicate: true };
      const recorded = await this.env.DB.prepare("SELECT cost_micros FROM usage_records WHERE request_id = ?")
        .bind(requestId)
        .first<{ cost_micros: number }>();
      if (recorded) return { costMicros: recorded.cost_micros, duplicate: true };
    }
    const prices = await this.modelPrices(settlement.model);
    const { costMicros, tier } = priceUsage(prices, usage, settlement.completedAt);

    // Everything above may have yielded to other calls (one of them may have settled this
    // request); the batch's work runs without awaiting, and the settlement, the charge and the
    // outbox row are committed together.
    const result = await this.inSettleBatch((batch): SettleResult => {
      const book = this.theBook();
      const now = Date.now();
      const settled = book.reservation(requestId) === undefined ? (batch.costOf(requestId) ?? book.settledCost(requestId)) : null;
      if (settled !== null) return { costMicros: settled, duplicate: true };
      const charged = book.charge(requestId, costMicros, now);
      if (charged < costMicros) console.warn(`ledger ${accountId}: request ${requestId} cost ${costMicros} but only ${charged} was left`);
      book.release(requestId);
      batch.add(requestId, charged, JSON.stringify(toUsageRow(settlement, usage, charged, tier)));
      return { costMicros: charged, duplicate: false };
    });
    if (!result.duplicate) await this.flushOutbox();
    return result;
  }

  // Settlements arriving within SETTLE_GATHER_MS are settled in one synchronous pass and one
  // storage transaction: each balance touched is written once, and the batch's usage rows are
  // one outbox row (settle-batch.ts). While a commit is unconfirmed this
  // object's answers wait (the output gate), so one commit per batch instead of one per request
  // keeps reserve() answers off the disk path. Each settle() answers once its batch is
  // committed; until then its request's hold keeps its money reserved.
  private inSettleBatch(work: (batch: SettleBatch) => SettleResult): Promise<SettleResult> {
    return new Promise((resolve, reject) => {
      this.settleQueue.push({ work, resolve, reject });
      if (this.settleQueue.length === 1) setTimeout(() => this.runSettleBatch(), SETTLE_GATHER_MS);
    });
  }

  // Also run early by a balance read, which must include every settlement already received. A
  // failure rolls the whole batch back (storage, and the balances in memory); its callers retry.
  private runSettleBatch(): void {
    const queued = this.settleQueue;
    this.settleQueue = [];
    if (queued.length === 0) return;
    let results: { done: SettleResult[]; batch: SettleBatch };
    try {
      results = this.writeBook((book) => {
        const batch = new SettleBatch();
        const done = queued.map((item) => item.work(batch));
        book.storeBalances();
        batch.store(this.sql);
        return { done, batch };
      });
    } catch (err) {
      for (const item of queued) item.reject(err);
      return;
    }
    this.theBook().rememberSettled(results.batch.settled(), Date.now() - SETTLED_MEMORY_MS);
    queued.forEach((item, i) => item.resolve(results.done[i]!));
  }

  // A request refused before forwarding (rate limit, no worker, ...): nothing is charged, and its
  // admission is finished (nothing used).
  async release(requestId: string): Promise<void> {
    this.limiter.finish(requestId, 0);
    this.theBook().release(requestId);
  }

  async balances(accountId: string): Promise<BalanceSnapshot[]> {
    this.bindAccount(accountId);
    await this.syncCredits(accountId);
    this.runSettleBatch();
    const now = Date.now();
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
    for (const t of this.sql.exec<{ currency: string; amount: number }>("SELECT currency, amount FROM topped_up"))
      entry(t.currency).toppedUpMicros = t.amount;
    const reserved = this.theBook().reserved;
    if (reserved > 0) entry(LEDGER_CURRENCY).reservedMicros = reserved;
    return [...byCurrency.values()].sort((a, b) => a.currency.localeCompare(b.currency));
  }

  // ---- alarm: stale reservations, outbox retries ----------------------------------------------

  override async alarm(): Promise<void> {
    this.alarmAt = null;
    const now = Date.now();
    const book = this.theBook();
    book.releaseExpired(now);
    this.sql.exec("DELETE FROM grants WHERE remaining = 0 OR expires_at <= ?", now);
    book.reloadBalances();
    await this.flushOutbox();
    this.scheduleNextAlarm();
  }

  // ---- balances -----------------------------------------------------------------------------

  private bindAccount(accountId: string): void {
    if (this.boundTo === accountId) return;
    const bound = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'account_id'").toArray()[0];
    if (!bound) this.sql.exec("INSERT INTO meta (key, value) VALUES ('account_id', ?)", accountId);
    else if (bound.value !== accountId) throw new Error(`ledger of ${bound.value} called for ${accountId}`);
    this.boundTo = accountId;
  }

  private accountId(): string | null {
    return this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'account_id'").toArray()[0]?.value ?? null;
  }

  private theBook(): LedgerBook {
    this.book ??= LedgerBook.read(this.sql);
    return this.book;
  }

  // A storage transaction over the book; should it fail, storage rolls back and the balances,
  // which may have changed half-way, are read again.
  private writeBook<T>(write: (book: LedgerBook) => T): T {
    const book = this.theBook();
    try {
      return this.ctx.storage.transactionSync(() => write(book));
    } catch (err) {
      book.reloadBalances();
      throw err;
    }
  }

  // What a settlement still waiting in the outbox charged (after a restart, memory is gone).
  private pendingCost(requestId: string): number | null {
    return (
      this.sql
        .exec<{ cost: number }>(
          "SELECT r.value ->> 'costMicros' AS cost FROM usage_outbox AS o, json_each(o.rows) AS r WHERE r.value ->> 'requestId' = ?",
          requestId,
        )
        .toArray()[0]?.cost ?? null
    );
  }

  // Synchronous from check to insert, so no other call can slip in between.
  private tryReserve(requestId: string, amountMicros: number): boolean {
    const book = this.theBook();
    if (book.reservation(requestId) !== undefined) return true;
    if (book.settledCost(requestId) !== null) return false; // a request id is never reused
    const now = Date.now();
    const available = book.spendable(now) - book.reserved;
    if (available <= 0 || amountMicros > available) return false;
    book.reserve(requestId, amountMicros, now + RESERVATION_TTL_MS, now);
    this.writeHoldsBy(now + HOLD_PERSIST_AFTER_MS);
    return true;
  }

  // Holds reach storage once they have lasted HOLD_PERSIST_AFTER_MS (see ledger-book.ts), and
  // the alarm is set for the earliest expiry among them.
  private writeHoldsBy(at: number): void {
    if (this.holdWriteAt !== null && this.holdWriteAt <= at) return;
    this.holdWriteAt = at;
    setTimeout(() => {
      if (this.holdWriteAt !== at) return; // superseded by an earlier one
      this.holdWriteAt = null;
      const { earliestExpiry, nextDue } = this.theBook().storeHolds(Date.now() - HOLD_PERSIST_AFTER_MS);
      if (earliestExpiry !== null) this.ensureAlarmBy(earliestExpiry);
      if (nextDue !== null) this.writeHoldsBy(nextDue);
    }, Math.max(0, at - Date.now()));
  }

  // Folds credits written to D1 since the last sync into the balances. Concurrent callers share
  // one read, and each credit id is applied at most once even if two reads overlap.
  private syncCredits(accountId: string): Promise<void> {
    if (!this.syncing) {
      this.syncing = this.readAndFoldCredits(accountId).finally(() => {
        this.syncing = null;
      });
    }
    return this.syncing;
  }

  private lastCreditId(): number {
    const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'last_credit_id'").toArray()[0];
    return row ? Number(row.value) : 0;
  }

  private async readAndFoldCredits(accountId: string): Promise<void> {
    const { results } = await this.env.DB.prepare(
      "SELECT id, kind, currency, amount_micros, expires_at FROM balance_credits WHERE account_id = ? AND id > ? ORDER BY id",
    )
      .bind(accountId, this.lastCreditId())
      .all<CreditRow>();
    if (results.length === 0) return;
    this.ctx.storage.transactionSync(() => {
      let last = this.lastCreditId();
      for (const credit of results) {
        if (credit.id <= last) continue;
        this.applyCredit(credit);
        last = credit.id;
      }
      this.sql.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('last_credit_id', ?)", String(last));
    });
    this.book?.reloadBalances(); // credits change balances in bulk
  }

  // A negative amount (an operator's correction) takes from the same kind of balance, never below zero.
  private applyCredit(credit: CreditRow): void {
    if (credit.kind === "granted") {
      if (credit.amount_micros >= 0) {
        this.sql.exec(
          "INSERT OR IGNORE INTO grants (credit_id, currency, remaining, expires_at) VALUES (?, ?, ?, ?)",
          credit.id,
          credit.currency,
          credit.amount_micros,
          credit.expires_at,
        );
        return;
      }
      let left = -credit.amount_micros;
      const lots = this.sql
        .exec<{ credit_id: number; remaining: number }>(
          "SELECT credit_id, remaining FROM grants WHERE currency = ? AND remaining > 0 ORDER BY expires_at IS NULL, expires_at, credit_id",
          credit.currency,
        )
        .toArray();
      for (const lot of lots) {
        const take = Math.min(left, lot.remaining);
        this.sql.exec("UPDATE grants SET remaining = remaining - ? WHERE credit_id = ?", take, lot.credit_id);
        left -= take;
        if (left === 0) break;
      }
      return;
    }
    this.sql.exec("INSERT OR IGNORE INTO topped_up (currency, amount) VALUES (?, 0)", credit.currency);
    this.sql.exec("UPDATE topped_up SET amount = MAX(0, amount + ?) WHERE currency = ?", credit.amount_micros, credit.currency);
  }

  // ---- prices -------------------------------------------------------------------------------

  // Read without the `enabled` filter: a model switched off mid-request is still settled.
  private async modelPrices(modelId: string): Promise<ModelPrices> {
    const cached = this.modelCache.get(modelId);
    if (cached && Date.now() - cached.fetchedAt < MODEL_CACHE_MS) return cached.prices;
    const row = await this.env.DB.prepare(
      `SELECT cache_hit_price, cache_miss_price, output_price, off_peak_discount_percent, max_reasoning_tokens
         FROM models WHERE id = ?`,
    )
      .bind(modelId)
      .first<{ cache_hit_price: number; cache_miss_price: number; output_price: number; off_peak_discount_percent: number; max_reasoning_tokens: number }>();
    if (!row) throw new Error(`settlement for unknown model ${modelId}`);
    const prices: ModelPrices = {
      cacheHitPrice: row.cache_hit_price,
      cacheMissPrice: row.cache_miss_price,
      outputPrice: row.output_price,
      offPeakDiscountPercent: row.off_peak_discount_percent,
      maxReasoningTokens: row.max_reasoning_tokens,
    };
    this.modelCache.set(modelId, { prices, fetchedAt: Date.now() });
    return prices;
  }

  // ---- outbox: usage rows and roll-ups to D1 --------------------------------------------------

  // One writer at a time; a caller arriving while a flush runs gets a flush that starts after
  // its row was committed. Failures stay in the outbox for the alarm to retry.
  private flushOutbox(): Promise<void> {
    if (this.flushing) {
      this.flushRequested = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      try {
        // Let the rest of a settlement batch answer first; the batch's rows go to D1 together:
        // under load one D1 write per interval instead of one per request.
        await new Promise((resolve) => setTimeout(resolve, OUTBOX_GATHER_MS));
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
      await this.env.DB.batch(usageStatements(this.env.DB, `[${pending.map((p) => p.rows.slice(1, -1)).join(",")}]`));
    } catch (err) {
      const attempts = Math.max(...pending.map((p) => p.attempts)) + 1;
      this.sql.exec("UPDATE usage_outbox SET attempts = attempts + 1 WHERE id <= ?", lastId);
      console.error(`ledger ${this.accountId()}: writing usage rows to D1 failed (attempt ${attempts}); retrying from the alarm`, err);
      this.ensureAlarmBy(Date.now() + Math.min(OUTBOX_RETRY_MAX_MS, 1000 * 2 ** Math.min(attempts, 20)));
      return false;
    }
    // The delivery is the oldest rows: everything up to its last id (rows added since come after).
    this.sql.exec("DELETE FROM usage_outbox WHERE id <= ?", lastId);
    return pending.length < oldest.length || oldest.length === 64;
  }

  // ---- alarm scheduling ---------------------------------------------------------------------

  private ensureAlarmBy(at: number): void {
    if (this.alarmAt !== null && this.alarmAt <= at) return;
    this.alarmAt = at;
    void this.ctx.storage.setAlarm(at);
  }

  private scheduleNextAlarm(): void {
    const now = Date.now();
    const candidates: number[] = [];
    const reservation = this.sql.exec<{ at: number | null }>("SELECT MIN(expires_at) AS at FROM reservations").one().at;
    if (reservation !== null) candidates.push(reservation);
    const outbox = this.sql.exec<{ attempts: number | null }>("SELECT MAX(attempts) AS attempts FROM usage_outbox").one().attempts;
    if (outbox !== null) candidates.push(now + Math.min(OUTBOX_RETRY_MAX_MS, 1000 * 2 ** Math.min(outbox, 20)));
    if (candidates.length > 0) this.ensureAlarmBy(Math.max(now + 1000, Math.min(...candidates)));
  }
}

// Storage written before usage_outbox: an outbox row per request, and settled ids kept on disk
// (now in memory, see SETTLED_MEMORY_MS). Their undelivered rows become one usage_outbox row.
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

function toUsageRow(s: Settlement, usage: Usage, costMicros: number, tier: PriceTier): UsageRow {
  return {
    requestId: s.requestId,
    accountId: s.accountId,
    keyId: s.keyId,
    model: s.model,
    endpoint: s.endpoint,
    cacheHitTokens: usage.cacheHitTokens,
    cacheMissTokens: usage.cacheMissTokens,
    completionTokens: usage.completionTokens,
    reasoningTokens: usage.reasoningTokens,
    costMicros,
    priceTier: tier,
    status: s.status,
    workerId: s.workerId,
    startedAt: s.startedAt,
    completedAt: s.completedAt,
  };
}

export function ledgerFor(env: Env, accountId: string) {
  return env.LEDGER.get(env.LEDGER.idFromName(accountId));
}

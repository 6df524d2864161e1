// The account ledger: one Durable Object per account, the only writer of its balances. It
// composes one module per concern, each in its own file:
//   balances.ts        granted lots and topped-up credit; charges (granted first, soonest expiry first)
//   holds.ts           each request's worst case held while it runs, extended by its heartbeat
//   credits.ts         grants and top-ups folded in from D1's credit log by id
//   settle-batch.ts    settlements committed in batches, and the ids settled lately
//   usage-outbox.ts    usage rows on their way to D1, delivered idempotently
//   model-prices.ts    the registry's prices, cached
//   ledger-alarm.ts    the alarm: lapsed holds, outbox retries
//   ledger-tables.ts   its storage, and the account it belongs to
//   auth/live-keys.ts, limits/limiter-buckets.ts: the account's live keys and rate limits, held
//     here so that checking a request's key, admitting it under the account's current limits
//     and holding its money are one call (`reserve` with `keyId` and `admit`), and settle or
//     release finishes its lease.
//
// A settlement delivered twice (a retry, the settlement queue's redelivery) is recognised from
// memory, else from the outbox, else from D1's usage_records (keyed by request id): a request is
// charged exactly once.
import { DurableObject } from "cloudflare:workers";
import { LiveKeys } from "../auth/live-keys";
import type { AuthenticatedKey, Env } from "../env";
import { accountLimits } from "../limits/defaults";
import { persistedLimiter, type AdmitRequest, type AdmitResult, type LimiterBuckets } from "../limits/limiter-buckets";
import { Balances, type BalanceSnapshot } from "./balances";
import { CreditSync } from "./credits";
import { HOLD_TTL_MS, Holds } from "./holds";
import { LedgerAlarm } from "./ledger-alarm";
import { AccountBinding, createLedgerTables } from "./ledger-tables";
import { PriceCache } from "./model-prices";
import { priceUsage } from "./pricing";
import { SettleBatches, SettleBatch } from "./settle-batch";
import { toUsageRow, type Settlement, type SettleResult } from "./settlement";
import { normalizeUsage } from "./usage";
import { UsageOutbox } from "./usage-outbox";

export interface ReserveRequest {
  accountId: string;
  requestId: string;
  amountMicros: number;
  // The hold lapses this long after it was made or last extended (default HOLD_TTL_MS).
  holdMs?: number;
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

export class AccountLedger extends DurableObject<Env> {
  private readonly account: AccountBinding;
  private readonly balanceBook: Balances;
  private readonly holds: Holds;
  private readonly credits: CreditSync;
  private readonly batches: SettleBatches;
  private readonly outbox: UsageOutbox;
  private readonly prices = new PriceCache(() => this.env.DB);
  private readonly alarmClock: LedgerAlarm;
  private readonly limiter: LimiterBuckets;
  private readonly liveKeys = new LiveKeys(() => this.env.DB);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const sql = ctx.storage.sql;
    createLedgerTables(sql);
    this.account = new AccountBinding(sql);
    this.alarmClock = new LedgerAlarm(ctx.storage);
    this.balanceBook = new Balances(sql);
    this.holds = new Holds(sql, (expiry) => this.alarmClock.ensureBy(expiry));
    this.credits = new CreditSync(ctx.storage, () => this.env.DB, () => this.balanceBook.reload());
    this.batches = new SettleBatches((write) => this.commitBatch(write));
    this.outbox = new UsageOutbox(sql, () => this.env.DB, (at) => this.alarmClock.ensureBy(at), () => this.account.id() ?? "?");
    this.limiter = persistedLimiter(ctx);
    void ctx.blockConcurrencyWhile(() => this.alarmClock.load());
  }

  // ---- RPC ----------------------------------------------------------------------------------

  async reserve({ accountId, requestId, amountMicros, holdMs = HOLD_TTL_MS, keyId, admit }: ReserveRequest): Promise<ReserveResult> {
    this.account.bind(accountId);
    if (!Number.isSafeInteger(amountMicros) || amountMicros < 0) throw new Error(`invalid reservation amount ${amountMicros}`);
    const key = keyId === undefined ? undefined : await this.liveKeys.check(accountId, keyId);
    if (key === null) return { ok: false, key };
    if (admit && !key) throw new Error("admission without a key to read the limits of");
    const admission = admit && key ? this.limiter.admit({ requestId, limits: accountLimits(key.limits), tokens: admit.tokens }) : undefined;
    if (admission && !admission.ok) return { ok: false, key, admission };
    let ok = this.tryHold(requestId, amountMicros, holdMs);
    if (!ok) {
      // Maybe a top-up arrived since the last sync; look once before refusing.
      await this.credits.sync(accountId);
      ok = this.tryHold(requestId, amountMicros, holdMs);
    }
    if (!ok && admission) this.limiter.finish(requestId, 0);
    return { ok, ...(key ? { key } : {}), ...(admission ? { admission } : {}) };
  }

  // The heartbeat of a request still running: its hold lapses `holdMs` from now. False when
  // it holds nothing (settled, released or lapsed).
  async extendHold(accountId: string, requestId: string, holdMs = HOLD_TTL_MS): Promise<boolean> {
    this.account.bind(accountId);
    return this.holds.extend(requestId, holdMs, Date.now());
  }

  // The key with its current limits, or null when it is not a live key of this account.
  async checkKey(accountId: string, keyId: string): Promise<AuthenticatedKey | null> {
    this.account.bind(accountId);
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
    this.account.bind(accountId);
    const usage = normalizeUsage(settlement.usage);
    this.limiter.finish(requestId, usage.promptTokens + usage.completionTokens);
    // A request with an open hold has not settled: settling drops the hold in the same
    // transaction, and an id that settled is never held again.
    if (this.holds.amount(requestId) === undefined) {
      const known = await this.knownCost(requestId);
      if (known !== null) return { costMicros: known, duplicate: true };
    }
    const prices = await this.prices.of(settlement.model);
    const { costMicros, tier } = priceUsage(prices, usage, settlement.completedAt);

    // Everything above may have yielded to other calls (one of them may have settled this
    // request); the batch's work runs without awaiting.
    const result = await this.batches.add((batch): SettleResult => {
      const held = this.holds.amount(requestId);
      const settled = held === undefined ? (batch.costOf(requestId) ?? this.batches.settledCost(requestId)) : null;
      if (settled !== null) return { costMicros: settled, duplicate: true };
      const charged = this.balanceBook.charge(costMicros, this.holds.reserved - (held ?? 0), Date.now());
      if (charged < costMicros) console.warn(`ledger ${accountId}: request ${requestId} cost ${costMicros} but only ${charged} was left`);
      this.holds.release(requestId);
      batch.add(requestId, charged, JSON.stringify(toUsageRow(settlement, usage, charged, tier)));
      return { costMicros: charged, duplicate: false };
    });
    if (!result.duplicate) await this.outbox.flush();
    return result;
  }

  // A request refused before forwarding (rate limit, no worker, ...): nothing is charged, and its
  // admission is finished (nothing used).
  async release(requestId: string): Promise<void> {
    this.limiter.finish(requestId, 0);
    this.holds.release(requestId);
  }

  async balances(accountId: string): Promise<BalanceSnapshot[]> {
    this.account.bind(accountId);
    await this.credits.sync(accountId);
    this.batches.runNow();
    return this.balanceBook.snapshot(Date.now(), this.holds.reserved);
  }

  // ---- alarm: lapsed holds, outbox retries ----------------------------------------------------

  override async alarm(): Promise<void> {
    this.alarmClock.fired();
    const now = Date.now();
    this.holds.releaseExpired(now);
    this.balanceBook.dropSpentAndExpired(now);
    await this.outbox.flush();
    this.alarmClock.scheduleNext(Date.now(), [this.holds.earliestStoredExpiry(), this.outbox.nextRetry(Date.now())]);
  }

  // ---- internals ------------------------------------------------------------------------------

  // What a request without a hold was charged, if it settled: memory, the outbox (after a
  // restart), D1 (delivered long ago). Null: it never settled (released, or its hold lapsed).
  private async knownCost(requestId: string): Promise<number | null> {
    const known = this.batches.settledCost(requestId) ?? this.outbox.pendingCost(requestId);
    if (known !== null) return known;
    const recorded = await this.env.DB.prepare("SELECT cost_micros FROM usage_records WHERE request_id = ?")
      .bind(requestId)
      .first<{ cost_micros: number }>();
    return recorded?.cost_micros ?? null;
  }

  // One storage transaction: the batch's work, its balances and its outbox row. Should it fail,
  // storage rolls back and the balances, which may have changed half-way, are read again.
  private commitBatch(write: (batch: SettleBatch) => SettleResult[]): { done: SettleResult[]; batch: SettleBatch } {
    try {
      return this.ctx.storage.transactionSync(() => {
        const batch = new SettleBatch();
        const done = write(batch);
        this.balanceBook.store();
        batch.store(this.ctx.storage.sql);
        return { done, batch };
      });
    } catch (err) {
      this.balanceBook.reload();
      throw err;
    }
  }

  // Synchronous from check to hold, so no other call can slip in between.
  private tryHold(requestId: string, amountMicros: number, holdMs: number): boolean {
    if (this.holds.amount(requestId) !== undefined) return true;
    if (this.batches.settledCost(requestId) !== null) return false; // a request id is never reused
    const now = Date.now();
    const available = this.balanceBook.spendable(now) - this.holds.reserved;
    if (available <= 0 || amountMicros > available) return false;
    this.holds.add(requestId, amountMicros, holdMs, now);
    return true;
  }
}

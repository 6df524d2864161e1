// Helpers for driving the account ledger directly, the way the inference pipeline does.
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { ledgerFor } from "../../../workers/gateway/src/stubs";
import type { Settlement } from "../../../workers/gateway/src/billing/settlement";
import { Balances } from "../../../workers/gateway/src/billing/balances";
import { Holds } from "../../../workers/gateway/src/billing/holds";
import type { Usage } from "../../../workers/gateway/src/billing/usage";
import type { Env } from "../../../workers/gateway/src/env";
import { setupFakeWorker } from "../chat/helpers";
import { createAccount, createKey, credit } from "../setup/fixtures";

export const gatewayEnv = env as unknown as Env;
export const PEAK_NOON = Date.UTC(2025, 3, 1, 12, 0, 0);

export const ledger = (accountId: string) => ledgerFor(gatewayEnv, accountId);

export function usageOf(miss: number, completion: number, hit = 0, reasoning = 0): Usage {
  return { promptTokens: hit + miss, cacheHitTokens: hit, cacheMissTokens: miss, completionTokens: completion, reasoningTokens: reasoning };
}

export function settlement(accountId: string, requestId: string, usage: Usage, overrides: Partial<Settlement> = {}): Settlement {
  return {
    accountId,
    requestId,
    keyId: "key_test",
    model: "deepseek-chat",
    endpoint: "chat.completions",
    usage,
    status: "ok",
    workerId: "worker-1",
    startedAt: PEAK_NOON - 1000,
    completedAt: PEAK_NOON,
    ...overrides,
  };
}

export async function total(accountId: string): Promise<{ granted: number; toppedUp: number; reserved: number; total: number }> {
  const usd = (await ledger(accountId).balances(accountId)).find((b) => b.currency === "USD");
  const granted = usd?.grantedMicros ?? 0;
  const toppedUp = usd?.toppedUpMicros ?? 0;
  return { granted, toppedUp, reserved: usd?.reservedMicros ?? 0, total: granted + toppedUp };
}

export async function usageRows(accountId: string) {
  const { results } = await gatewayEnv.DB.prepare("SELECT * FROM usage_records WHERE account_id = ? ORDER BY request_id")
    .bind(accountId)
    .all<Record<string, any>>();
  return results;
}

export async function usageSums(accountId: string): Promise<{ rows: number; rowCost: number; dailyRequests: number; dailyCost: number }> {
  const r = await gatewayEnv.DB.prepare("SELECT COUNT(*) AS n, COALESCE(SUM(cost_micros), 0) AS cost FROM usage_records WHERE account_id = ?")
    .bind(accountId)
    .first<{ n: number; cost: number }>();
  const d = await gatewayEnv.DB.prepare("SELECT COALESCE(SUM(requests), 0) AS n, COALESCE(SUM(cost_micros), 0) AS cost FROM usage_daily WHERE account_id = ?")
    .bind(accountId)
    .first<{ n: number; cost: number }>();
  return { rows: r!.n, rowCost: r!.cost, dailyRequests: d!.n, dailyCost: d!.cost };
}

// Restarts the account's ledger as a crash would: its memory (balances, holds younger than
// HOLD_PERSIST_AFTER_MS, settled ids) is gone; the next call starts a new instance on its storage.
export async function restartLedger(accountId: string): Promise<void> {
  await runInDurableObject(ledger(accountId), async (_, state) => {
    try {
      state.abort("restarted by a test");
    } catch {
      // abort() throws in the calling code too
    }
  }).catch(() => undefined);
}

// Runs `sql` inside the account's ledger storage (restartLedger after it: the ledger reads it again).
export async function ledgerSql(accountId: string, sql: string, ...params: unknown[]): Promise<unknown[]> {
  return runInDurableObject(ledger(accountId), async (_, state) => state.storage.sql.exec(sql, ...params).toArray());
}

export async function runLedgerAlarm(accountId: string): Promise<boolean> {
  return runDurableObjectAlarm(ledger(accountId));
}

// Replaces the ledger's D1 binding, e.g. with one that fails, until `restore` is called.
export async function withLedgerDb(accountId: string, db: D1Database): Promise<() => Promise<void>> {
  let original: D1Database | undefined;
  await runInDurableObject(ledger(accountId), async (instance) => {
    const target = instance as unknown as { env: Env };
    original = target.env.DB;
    target.env = { ...target.env, DB: db };
  });
  return async () => {
    await runInDurableObject(ledger(accountId), async (instance) => {
      const target = instance as unknown as { env: Env };
      target.env = { ...target.env, DB: original! };
    });
  };
}

export const failingBatchDb = (): D1Database =>
  new Proxy(gatewayEnv.DB, {
    get(target, prop) {
      if (prop === "batch") return async () => Promise.reject(new Error("D1 is down (test)"));
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });

// The ledger's balances and holds in memory against a fresh read of its storage: what reserve
// and settle decide on must always be what storage holds.
export async function bookAgainstStorage(accountId: string): Promise<{ memory: unknown; storage: unknown }> {
  return runInDurableObject(ledger(accountId), async (instance, state) => {
    const now = Date.now();
    const view = (balances: Balances, holds: Holds) => ({ spendable: balances.spendable(now), reserved: holds.reserved });
    const memory = instance as unknown as { balanceBook: Balances; holds: Holds };
    return { memory: view(memory.balanceBook, memory.holds), storage: view(new Balances(state.storage.sql), new Holds(state.storage.sql, () => undefined)) };
  });
}

// Makes the account's ledger fail every settle() (D1, where it reads prices and past
// settlements, unreachable from it) until it restarts.
export async function breakLedgerSettle(accountId: string): Promise<void> {
  const unreachable = new Proxy(gatewayEnv.DB, {
    get() {
      return () => {
        throw new Error("D1 is unreachable from the ledger (test)");
      };
    },
  });
  await runInDurableObject(ledger(accountId), async (instance) => {
    const target = instance as unknown as { env: Env };
    target.env = { ...target.env, DB: unreachable };
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Polls `check` until it returns true (settlements, queues and alarms run in the background).
export async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// An account with a key and `toppedUp` micro-USD, the fake GPU worker registered: ready for the API.
export async function payingAccount(toppedUp: number): Promise<{ account: string; key: string }> {
  await setupFakeWorker();
  const account = await createAccount();
  const { key } = await createKey(account);
  if (toppedUp > 0) await credit(account, "topped_up", toppedUp);
  return { account, key };
}

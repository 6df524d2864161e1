// The money invariants under concurrency, driven straight at the ledger the way the inference
// pipeline drives it: reserve the worst case, run, settle what was delivered (or release).
import { describe, expect, it } from "vitest";
import { worstCaseCostMicros } from "../../../workers/gateway/src/billing/pricing";
import { findModel } from "../../../workers/gateway/src/db/models";
import { createAccount, credit } from "../setup/fixtures";
import { bookAgainstStorage, gatewayEnv, ledger, settlement, total, usageOf, usageSums } from "./ledger-helpers";

const REQUESTS = 200;
const PROMPT = 1000;
const MAX_TOKENS = 4096;

// Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed.
function random(seed: number): () => number {
  return () => {
    seed |= 0;
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function worstCase(): Promise<number> {
  return worstCaseCostMicros((await findModel(gatewayEnv.DB, "deepseek-chat"))!, PROMPT, MAX_TOKENS);
}

describe("200 concurrent requests on a balance that covers about 10", () => {
  it("admits exactly what the balance covers when all reserve at once, and every micro-unit is accounted for", async () => {
    const account = await createAccount();
    const worst = await worstCase();
    const initial = 10 * worst + worst - 1; // ten fit, the eleventh does not
    await credit(account, "granted", 3 * worst);
    await credit(account, "topped_up", initial - 3 * worst);
    const l = ledger(account);
    expect((await total(account)).total).toBe(initial);

    const ids = Array.from({ length: REQUESTS }, (_, i) => `burst-${i}`);
    const reserved = await Promise.all(ids.map((requestId) => l.reserve({ accountId: account, requestId, amountMicros: worst })));
    const admitted = ids.filter((_, i) => reserved[i]!.ok);
    expect(admitted).toHaveLength(10);
    expect(await total(account)).toMatchObject({ total: initial, reserved: 10 * worst });

    const rnd = random(7);
    const results = await Promise.all(
      admitted.map((requestId) => l.settle(settlement(account, requestId, usageOf(PROMPT, Math.floor(rnd() * (MAX_TOKENS + 1)))))),
    );
    const charged = results.reduce((sum, r) => sum + r.costMicros, 0);
    const after = await total(account);
    expect(after.reserved).toBe(0);
    expect(after.total).toBeGreaterThanOrEqual(0);
    expect(initial - after.total).toBe(charged);
    expect(await usageSums(account)).toEqual({ rows: 10, rowCost: charged, dailyRequests: 10, dailyCost: charged });
  });

  it("never spends below zero while requests reserve, run, settle twice, abort, fail and release at random", async () => {
    const account = await createAccount();
    const worst = await worstCase();
    const initial = 10 * worst + 1234;
    await credit(account, "granted", 4 * worst);
    await credit(account, "topped_up", initial - 4 * worst);
    const l = ledger(account);
    expect((await total(account)).total).toBe(initial);

    const rnd = random(42);
    let running = 0; // worst cases of requests running right now
    let settledSum = 0;
    let maxCommitted = 0;
    let refused = 0;
    let ran = 0;
    let done = false;
    const snapshots: { total: number; reserved: number }[] = [];

    // Watches the balance the whole time.
    const watcher = (async () => {
      while (!done) {
        snapshots.push(await total(account));
        await sleep(1);
      }
    })();

    await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const requestId = `mixed-${i}`;
        const fate = rnd();
        const completion = Math.floor(rnd() * (MAX_TOKENS + 1));
        const hit = Math.floor(rnd() * (PROMPT / 64)) * 64;
        const runMs = Math.floor(rnd() * 20);
        await sleep(Math.floor(rnd() * 30));
        if (!(await l.reserve({ accountId: account, requestId, amountMicros: worst })).ok) {
          refused++;
          return;
        }
        // The request runs only with a reservation; what runs (plus what was charged) never
        // exceeds what the account had.
        ran++;
        running += worst;
        maxCommitted = Math.max(maxCommitted, running + settledSum);
        expect(running + settledSum).toBeLessThanOrEqual(initial);
        await sleep(runMs);
        running -= worst;
        if (fate < 0.1) {
          await l.release(requestId); // refused before forwarding (e.g. no worker)
          return;
        }
        const status = fate < 0.2 ? "aborted" : fate < 0.3 ? "failed" : "ok";
        const delivered = status === "ok" ? completion : Math.floor(completion / 3);
        const s = settlement(account, requestId, usageOf(PROMPT - hit, delivered, hit), { status });
        const deliveries = fate > 0.8 ? [l.settle(s), l.settle(s)] : [l.settle(s)];
        const outcomes = await Promise.all(deliveries);
        expect(outcomes.filter((o) => !o.duplicate)).toHaveLength(1);
        settledSum += outcomes.find((o) => !o.duplicate)!.costMicros;
      }),
    );
    done = true;
    await watcher;

    console.log(`mixed run: ${ran} ran, ${refused} refused (402), ${snapshots.length} balance snapshots, charged ${settledSum} of ${initial}`);
    expect(refused).toBeGreaterThan(0);
    expect(ran).toBeGreaterThanOrEqual(10);
    expect(refused + ran).toBe(REQUESTS);
    expect(maxCommitted).toBeLessThanOrEqual(initial);
    expect(snapshots.length).toBeGreaterThan(1);
    for (const s of snapshots) {
      expect(s.total).toBeGreaterThanOrEqual(0);
      expect(s.reserved).toBeLessThanOrEqual(s.total);
    }
    const after = await total(account);
    expect(after.reserved).toBe(0);
    expect(initial - after.total).toBe(settledSum);
    const sums = await usageSums(account);
    expect(sums.rowCost).toBe(settledSum);
    expect(sums.dailyCost).toBe(settledSum);
    expect(sums.rows).toBe(sums.dailyRequests);
    // Granted credit went first.
    expect(after.granted).toBe(Math.max(0, 4 * worst - settledSum));
    // What the ledger decided on in memory is what its storage holds.
    const book = await bookAgainstStorage(account);
    expect(book.memory).toEqual(book.storage);
    expect(book.storage).toEqual({ spendable: after.total, reserved: 0 });
  });

  it("keeps its in-memory book equal to storage while top-ups and grants arrive between requests", async () => {
    const account = await createAccount();
    const worst = await worstCase();
    await gatewayEnv.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros, expires_at) VALUES (?, 'granted', ?, ?)")
      .bind(account, 2 * worst, Date.now() + 60_000)
      .run();
    const l = ledger(account);
    const rnd = random(99);
    let credited = 2 * worst;
    let charged = 0;
    await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        await sleep(Math.floor(rnd() * 30));
        if (i % 10 === 0) {
          const amount = Math.floor(rnd() * worst) + 1;
          await credit(account, i % 20 === 0 ? "granted" : "topped_up", amount);
          credited += amount;
          return;
        }
        const requestId = `book-${i}`;
        // Refused here, a reservation may fit once the ledger has folded in the credit above.
        if (!(await l.reserve({ accountId: account, requestId, amountMicros: worst })).ok) return;
        await sleep(Math.floor(rnd() * 10));
        if (rnd() < 0.2) return void (await l.release(requestId));
        const { costMicros } = await l.settle(settlement(account, requestId, usageOf(PROMPT, Math.floor(rnd() * MAX_TOKENS))));
        charged += costMicros;
      }),
    );
    const after = await total(account); // folds in every credit
    expect(after).toMatchObject({ total: credited - charged, reserved: 0 });
    const book = await bookAgainstStorage(account);
    expect(book.memory).toEqual(book.storage);
    expect(book.storage).toEqual({ spendable: credited - charged, reserved: 0 });
  });
});

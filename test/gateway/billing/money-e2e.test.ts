// The money invariants end to end: HTTP requests through the whole pipeline (auth, validate,
// context, rateLimit, reserve, forward to the fake worker, settle) and what lands in D1.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { priceUsage } from "../../../workers/gateway/src/billing/pricing";
import { findModel } from "../../../workers/gateway/src/db/models";
import { BASE, fakeRequests, post, setupFakeWorker } from "../chat/helpers";
import { createAccount, createKey, credit } from "../setup/fixtures";
import { gatewayEnv, total, usageRows, usageSums } from "./ledger-helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [{ role: "user", content }], ...extra });

async function accountWithKey(opts: { granted?: number; toppedUp?: number; rpm?: number; concurrency?: number } = {}) {
  await setupFakeWorker();
  const account = await createAccount();
  const { key } = await createKey(account);
  if (opts.granted) await credit(account, "granted", opts.granted);
  if (opts.toppedUp) await credit(account, "topped_up", opts.toppedUp);
  await gatewayEnv.DB.prepare("UPDATE accounts SET rpm_limit = ?, concurrency_limit = ? WHERE id = ?")
    .bind(opts.rpm ?? null, opts.concurrency ?? null, account)
    .run();
  return { account, key };
}

// Settlement runs after the response has gone out; wait until its rows are in D1.
async function waitForUsageRows(account: string, count: number): Promise<Record<string, any>[]> {
  for (let i = 0; i < 200; i++) {
    const rows = await usageRows(account);
    if (rows.length >= count && (await total(account)).reserved === 0) return rows;
    await sleep(50);
  }
  throw new Error(`expected ${count} usage rows for ${account}, have ${(await usageRows(account)).length}`);
}

async function expectRowPricedExactly(row: Record<string, any>) {
  const model = (await findModel(gatewayEnv.DB, row.model))!;
  const usage = {
    promptTokens: row.cache_hit_tokens + row.cache_miss_tokens,
    cacheHitTokens: row.cache_hit_tokens,
    cacheMissTokens: row.cache_miss_tokens,
    completionTokens: row.completion_tokens,
    reasoningTokens: row.reasoning_tokens,
  };
  expect(priceUsage(model, usage, row.completed_at)).toEqual({ costMicros: row.cost_micros, tier: row.price_tier });
}

// Reads an SSE stream until `contentChunks` content deltas arrived, then walks away.
async function readThenAbort(res: Response, contentChunks: number): Promise<number> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let seen = 0;
  while (seen < contentChunks) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
      if (JSON.parse(event.slice(6)).choices?.[0]?.delta?.content) seen++;
    }
  }
  await reader.cancel();
  return seen;
}

describe("200 concurrent requests through the gateway on a balance that covers about 10", () => {
  it("never goes below zero, forwards nothing without a reservation, and balance change == settlements == usage rows", async () => {
    // Each request may cost up to 1000 output tokens (1100 micros) plus a short prompt.
    const initial = 10 * 1_100 + 800;
    const { account, key } = await accountWithKey({ granted: 3_000, toppedUp: initial - 3_000, concurrency: 1_000, rpm: 100_000 });
    expect((await total(account)).total).toBe(initial);

    let running = true;
    const snapshots: { total: number; reserved: number }[] = [];
    const watcher = (async () => {
      while (running) {
        snapshots.push(await total(account));
        await sleep(5);
      }
    })();

    const responses = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await post("/chat/completions", key, chat(`request ${i} [[words:6]] [[slow:5]]`, { max_tokens: 1000 }));
        return { status: res.status, id: res.headers.get("x-ds-trace-id")!, body: await res.json<any>() };
      }),
    );
    const ok = responses.filter((r) => r.status === 200);
    const broke = responses.filter((r) => r.status === 402);
    expect(ok.length + broke.length).toBe(200);
    expect(ok.length).toBeGreaterThanOrEqual(10);
    expect(broke.length).toBeGreaterThan(0);
    expect(broke[0]!.body).toEqual({ error: { message: "Insufficient Balance", type: "insufficient_balance_error", param: null, code: "insufficient_balance" } });

    const rows = await waitForUsageRows(account, ok.length);
    running = false;
    await watcher;

    // Only reserved requests reached the worker.
    const forwarded = new Set((await fakeRequests()).map((r) => r.headers["x-request-id"]));
    expect(ok.every((r) => forwarded.has(r.id))).toBe(true);
    expect(broke.some((r) => forwarded.has(r.id))).toBe(false);

    // One row per answered request, with exactly the usage the client saw, priced exactly.
    expect(rows).toHaveLength(ok.length);
    const rowById = new Map(rows.map((r) => [r.request_id, r]));
    for (const r of ok) {
      const row = rowById.get(r.id)!;
      expect(row).toMatchObject({
        status: "ok",
        cache_hit_tokens: r.body.usage.prompt_cache_hit_tokens,
        cache_miss_tokens: r.body.usage.prompt_cache_miss_tokens,
        completion_tokens: r.body.usage.completion_tokens,
        reasoning_tokens: r.body.usage.completion_tokens_details.reasoning_tokens,
      });
      await expectRowPricedExactly(row);
    }

    const after = await total(account);
    const sums = await usageSums(account);
    expect(after.reserved).toBe(0);
    expect(after.total).toBeGreaterThanOrEqual(0);
    expect(initial - after.total).toBe(sums.rowCost);
    expect(sums.dailyCost).toBe(sums.rowCost);
    expect(sums.dailyRequests).toBe(ok.length);
    expect(after.granted).toBe(Math.max(0, 3_000 - sums.rowCost));
    for (const s of snapshots) {
      expect(s.total).toBeGreaterThanOrEqual(0);
      expect(s.reserved).toBeLessThanOrEqual(s.total);
    }
  });
});

describe("failed and aborted requests cost only what they delivered", () => {
  it("a client that leaves mid-stream pays for the prompt and the chunks it was sent", async () => {
    const { account, key } = await accountWithKey({ toppedUp: 1_000_000 });
    const res = await post("/chat/completions", key, chat("leave early [[words:40]] [[slow:60]]", { stream: true }));
    expect(res.status).toBe(200);
    const id = res.headers.get("x-ds-trace-id");
    const received = await readThenAbort(res, 3);
    expect(received).toBe(3);

    const [row] = await waitForUsageRows(account, 1);
    expect(row).toMatchObject({ request_id: id, status: "aborted" });
    // The role chunk carries no token; each content chunk is one completion token. The gateway
    // learns of the disconnect when it next writes, so the chunk in flight at that moment counts
    // as delivered; nothing the worker produced after that does (it was asked for 40).
    expect(row!.completion_tokens).toBeGreaterThanOrEqual(received);
    expect(row!.completion_tokens).toBeLessThanOrEqual(received + 1);
    await expectRowPricedExactly(row!);
    expect(1_000_000 - (await total(account)).total).toBe(row!.cost_micros);
  });

  it("a worker that dies mid-stream charges the prompt and the tokens streamed before it died", async () => {
    const { account, key } = await accountWithKey({ toppedUp: 1_000_000 });
    const res = await post("/chat/completions", key, chat("die [[words:6]] [[fail_after:3]]", { stream: true, stream_options: { include_usage: true } }));
    const text = await res.text();
    const events = text
      .split("\n\n")
      .map((b) => b.trim())
      .filter((b) => b.startsWith("data: {"))
      .map((b) => JSON.parse(b.slice(6)));
    const last = events.at(-1);
    expect(last.choices[0].finish_reason).toBe("insufficient_system_resource");

    const [row] = await waitForUsageRows(account, 1);
    expect(row).toMatchObject({
      status: "failed",
      completion_tokens: 3,
      cache_hit_tokens: last.usage.prompt_cache_hit_tokens,
      cache_miss_tokens: last.usage.prompt_cache_miss_tokens,
    });
    await expectRowPricedExactly(row!);
    expect(1_000_000 - (await total(account)).total).toBe(row!.cost_micros);
  });

  it("a request refused before forwarding costs nothing", async () => {
    const { account, key } = await accountWithKey({ toppedUp: 100 });
    const res = await post("/chat/completions", key, chat("too dear", { max_tokens: 8000 }));
    expect(res.status).toBe(402);
    const forwarded = new Set((await fakeRequests()).map((r) => r.headers["x-request-id"]));
    expect(forwarded.has(res.headers.get("x-ds-trace-id"))).toBe(false);
    expect(await total(account)).toMatchObject({ total: 100, reserved: 0 });
    expect(await usageRows(account)).toHaveLength(0);
  });
});

describe("rate limits over HTTP", () => {
  it("answers 429 with Retry-After and x-ratelimit headers, charges nothing for it, and sends the headers on success", async () => {
    const { account, key } = await accountWithKey({ toppedUp: 1_000_000, rpm: 2 });
    const results = await Promise.all(Array.from({ length: 5 }, (_, i) => post("/chat/completions", key, chat(`limited ${i} [[words:2]]`))));
    const ok = results.filter((r) => r.status === 200);
    const limited = results.filter((r) => r.status === 429);
    expect(ok).toHaveLength(2);
    expect(limited).toHaveLength(3);
    for (const r of ok) {
      expect(r.headers.get("x-ratelimit-limit-requests")).toBe("2");
      expect(r.headers.get("x-ratelimit-remaining-tokens")).toMatch(/^\d+$/);
    }
    const refusal = limited[0]!;
    expect(Number(refusal.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(refusal.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    expect(refusal.headers.get("x-ratelimit-reset-requests")).toMatch(/^\d+(ms|s|m\d+s)$/);
    expect(await refusal.json()).toEqual({ error: { message: "Rate Limit Reached", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" } });
    await Promise.all(ok.map((r) => r.text()));
    expect(await waitForUsageRows(account, 2)).toHaveLength(2);
  });
});

describe("/user/balance", () => {
  it("reflects settlements and leaves out expired granted credit", async () => {
    const { account, key } = await accountWithKey({ toppedUp: 2_000_000 });
    await gatewayEnv.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros, expires_at) VALUES (?, 'granted', ?, ?)")
      .bind(account, 5_000_000, Date.now() - 1)
      .run();
    await gatewayEnv.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros, expires_at) VALUES (?, 'granted', ?, ?)")
      .bind(account, 1_000_000, Date.now() + 86_400_000)
      .run();
    const balance = async () => (await SELF.fetch(`${BASE}/user/balance`, { headers: { authorization: `Bearer ${key}` } })).json<any>();
    expect(await balance()).toEqual({
      is_available: true,
      balance_infos: [{ currency: "USD", total_balance: "3.00", granted_balance: "1.00", topped_up_balance: "2.00" }],
    });
    // A million output tokens' worth would be too many for the fake; spend a little and check the sum.
    const res = await post("/chat/completions", key, chat("spend [[words:6]]"));
    await res.text();
    const [row] = await waitForUsageRows(account, 1);
    const after = await total(account);
    expect(after).toMatchObject({ granted: 1_000_000 - row!.cost_micros, toppedUp: 2_000_000 });
  });
});

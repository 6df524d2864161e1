// A key seen before lets the inference pipeline start admission and reservation while its lookup
// runs (auth/authenticate.ts). The lookup still decides: these pin down that a key refused by it
// is charged nothing, forwarded nothing and leaves the limits as they were, and that changed
// limits apply at once.
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { keysChanged } from "../../workers/gateway/src/auth/keys-changed";
import { ledgerFor } from "../../workers/gateway/src/stubs";
import type { LimiterBuckets } from "../../workers/gateway/src/limits/limiter-buckets";
import { fakeRequests, post, setupFakeWorker } from "./chat/helpers";
import { gatewayEnv, total, usageRows } from "./billing/ledger-helpers";
import { readyAccount } from "./setup/fixtures";

const chat = (marker: string) => ({ model: "deepseek-chat", messages: [{ role: "user", content: `${marker} [[words:2]]` }], max_tokens: 16 });

async function waitForUsageRows(account: string, count: number) {
  for (let i = 0; i < 100; i++) {
    const rows = await usageRows(account);
    if (rows.length >= count) return rows;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`expected ${count} usage rows`);
}

async function limiterLeases(account: string): Promise<number> {
  return runInDurableObject(ledgerFor(gatewayEnv, account), async (instance) => (instance as unknown as { limiter: LimiterBuckets }).limiter.leases.size);
}

describe("a key refused by its lookup after this isolate has seen it", () => {
  it("gets 401, is charged and forwarded nothing, and its admission is undone", async () => {
    await setupFakeWorker();
    const { account, key, keyId } = await readyAccount();
    await env.DB.prepare("UPDATE accounts SET rpm_limit = 3 WHERE id = ?").bind(account).run();
    await keysChanged(env, account);

    const warm = await post("/chat/completions", key, chat("warm"));
    expect(warm.status).toBe(200);
    await warm.text();
    const rows = await waitForUsageRows(account, 1);
    const before = await total(account);

    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), keyId).run();
    await keysChanged(env, account);
    const refused = await post("/chat/completions", key, chat("revoked"));
    expect(refused.status).toBe(401);
    expect((await refused.json<any>()).error.type).toBe("authentication_error");
    const forwarded = new Set((await fakeRequests()).map((r) => r.headers["x-request-id"]));
    expect(forwarded.has(refused.headers.get("x-ds-trace-id"))).toBe(false);
    expect(await total(account)).toEqual({ ...before, reserved: 0 });
    expect(await usageRows(account)).toHaveLength(rows.length);
    expect(await limiterLeases(account)).toBe(0);

    // The refused request gave its request back: 3 per minute, the warm one took one, this one the second.
    await env.DB.prepare("UPDATE api_keys SET revoked_at = NULL WHERE id = ?").bind(keyId).run();
    await keysChanged(env, account);
    const again = await post("/chat/completions", key, chat("again"));
    expect(again.status).toBe(200);
    expect(again.headers.get("x-ratelimit-remaining-requests")).toBe("1");
    await again.text();
  });

  it("also gets 401 when its body is invalid", async () => {
    const { account, key, keyId } = await readyAccount();
    await setupFakeWorker();
    expect((await post("/chat/completions", key, { model: "deepseek-chat", messages: [] })).status).toBe(400);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), keyId).run();
    await keysChanged(env, account);
    expect((await post("/chat/completions", key, { model: "deepseek-chat", messages: [] })).status).toBe(401);
  });
});

describe("limits changed after this isolate has seen the key", () => {
  it("admits under the limits the lookup read, not the remembered ones", async () => {
    await setupFakeWorker();
    const { account, key } = await readyAccount();
    const warm = await post("/chat/completions", key, chat("limits-warm"));
    expect(warm.status).toBe(200);
    await warm.text();

    await env.DB.prepare("UPDATE accounts SET rpm_limit = 1 WHERE id = ?").bind(account).run();
    await keysChanged(env, account);
    const first = await post("/chat/completions", key, chat("limits-first"));
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit-requests")).toBe("1");
    await first.text();
    expect((await post("/chat/completions", key, chat("limits-second"))).status).toBe(429);
    expect(await limiterLeases(account)).toBe(0);
  });

  it("serves and charges a request the remembered limits would refuse when the current ones allow it", async () => {
    await setupFakeWorker();
    const { account, key } = await readyAccount();
    // No request may run at once: refused, and the isolate remembers these limits.
    await env.DB.prepare("UPDATE accounts SET concurrency_limit = 0 WHERE id = ?").bind(account).run();
    await keysChanged(env, account);
    expect((await post("/chat/completions", key, chat("closed"))).status).toBe(429);
    const before = await total(account);

    await env.DB.prepare("UPDATE accounts SET concurrency_limit = 10 WHERE id = ?").bind(account).run();
    await keysChanged(env, account);
    const opened = await post("/chat/completions", key, chat("opened"));
    expect(opened.status).toBe(200);
    await opened.text();
    const [row] = await waitForUsageRows(account, 1);
    expect(row!.request_id).toBe(opened.headers.get("x-ds-trace-id"));
    expect(row!.cost_micros).toBeGreaterThan(0);
    expect(await total(account)).toMatchObject({ total: before.total - row!.cost_micros, reserved: 0 });
    expect(await limiterLeases(account)).toBe(0);
  });
});

// The cost of bad keys is bounded: an unknown key is remembered (no second D1 read) and each
// client address has a budget of failed authentications, then gets 429s before any lookup.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { generateApiKey, sha256Hex } from "../../workers/gateway/src/auth/api-keys";
import { FAILED_AUTH_BUDGET, FAILED_AUTH_WINDOW_MS, isKnownUnknown, UNKNOWN_KEY_TTL_MS } from "../../workers/gateway/src/auth/failed-auth";
import { createAccount, createKey, credit } from "./setup/fixtures";

const balance = (key: string, address?: string) =>
  SELF.fetch("https://gw.test/user/balance", { headers: { authorization: `Bearer ${key}`, ...(address ? { "cf-connecting-ip": address } : {}) } });

async function insertKey(accountId: string, key: { key: string; keyHash: string; displayPrefix: string; last4: string }) {
  await env.DB.prepare("INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4) VALUES (?, ?, 'late', ?, ?, ?)")
    .bind(`key_${crypto.randomUUID().slice(0, 8)}`, accountId, key.keyHash, key.displayPrefix, key.last4)
    .run();
}

describe("unknown keys", () => {
  it("are remembered as unknown for a while: the repeat reads nothing from D1", async () => {
    const account = await createAccount();
    await credit(account, "granted", 1_000_000);
    const key = await generateApiKey();
    expect((await balance(key.key)).status).toBe(401);
    // The key appears in D1 behind the gateway's back: a repeat that read D1 would now pass.
    await insertKey(account, key);
    const repeat = await balance(key.key);
    expect(repeat.status).toBe(401);
    expect((await repeat.json<any>()).error.type).toBe("authentication_error");
    // Past the time to live the key is looked up again.
    expect(isKnownUnknown(await sha256Hex(key.key), Date.now() + UNKNOWN_KEY_TTL_MS + 1)).toBe(false);
    expect((await balance(key.key)).status).toBe(200);
  });
});

describe("failed-authentication budget per client address", () => {
  it("answers 429 once an address has spent its budget; other addresses and known keys are unaffected", async () => {
    const address = `198.51.100.${Math.floor(Math.random() * 250) + 1}`;
    const { key: goodKey } = await createKey(await createAccount());
    expect((await balance(goodKey, "192.0.2.1")).status).toBe(200); // known to this isolate from now on

    for (let i = 0; i < FAILED_AUTH_BUDGET; i++) {
      const res = await balance((await generateApiKey()).key, address);
      expect(res.status, `attempt ${i + 1}`).toBe(401);
    }
    const spent = await balance((await generateApiKey()).key, address);
    expect(spent.status).toBe(429);
    expect(Number(spent.headers.get("retry-after"))).toBeGreaterThan(0);
    const body = await spent.json<any>();
    expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
    expect(body.error).toMatchObject({ type: "rate_limit_error", code: "rate_limit_exceeded" });
    expect(body.error.message).toMatch(/^Rate Limit Reached/);

    // Even a real key this isolate has not seen waits: nothing is looked up for this address.
    const account = await createAccount();
    await credit(account, "granted", 1_000_000);
    const fresh = await generateApiKey();
    await insertKey(account, fresh);
    expect((await balance(fresh.key, address)).status).toBe(429);

    expect((await balance((await generateApiKey()).key, "192.0.2.99")).status).toBe(401);
    expect((await balance(goodKey, address)).status).toBe(200);
  });

  it("counts across isolates: the budget lives in a Durable Object per address", async () => {
    const address = `203.0.113.${Math.floor(Math.random() * 250) + 1}`;
    const ns = env.SIGNIN_THROTTLE!;
    // Another isolate's failures from this address, as its counter recorded them.
    const counter = ns.get(ns.idFromName(`api-auth:${address}`));
    for (let i = 0; i < FAILED_AUTH_BUDGET; i++) await counter.attempt(FAILED_AUTH_BUDGET, FAILED_AUTH_WINDOW_MS);
    expect((await balance((await generateApiKey()).key, address)).status).toBe(429);
  });
});

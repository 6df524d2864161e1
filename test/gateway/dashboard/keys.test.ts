import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { signedUp } from "./browser-client";

const models = (key: string) => SELF.fetch("https://gw.test/models", { headers: { authorization: `Bearer ${key}` } });

describe("API keys", () => {
  it("shows a new key once, lists it by prefix and last four, and the key works", async () => {
    const { client } = await signedUp();
    const created = await client.createKey("laptop");
    expect(created.key).toMatch(/^sk-[0-9a-f]{32}$/);
    expect((await models(created.key)).status).toBe(200);

    const list = await (await client.get("/keys")).json<any>();
    expect(list.data).toHaveLength(1);
    expect(list.data[0]).toMatchObject({ id: created.id, name: "laptop", display_prefix: created.key.slice(0, 7), last4: created.key.slice(-4), revoked_at: null });
    expect(JSON.stringify(list)).not.toContain(created.key);
    expect(list.data[0].key_hash).toBeUndefined();
    const stored = await env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(created.id).first();
    expect(JSON.stringify(stored)).not.toContain(created.key);
  });

  it("revokes a key, after which the API refuses it", async () => {
    const { client } = await signedUp();
    const created = await client.createKey("temp");
    expect((await client.post(`/keys/${created.id}/revoke`)).status).toBe(200);
    const refused = await models(created.key);
    expect(refused.status).toBe(401);
    expect((await client.post(`/keys/${created.id}/revoke`)).status).toBe(404);
    const list = await (await client.get("/keys")).json<any>();
    expect(list.data[0].revoked_at).toBeGreaterThan(0);
  });

  it("keeps a hostile key name as plain data", async () => {
    const { client } = await signedUp();
    const name = `<img src=x onerror="alert(1)"><script>alert(2)</script>`;
    const created = await client.createKey(name);
    expect(created.name).toBe(name);
    const res = await client.get("/keys");
    expect(res.headers.get("content-type")).toContain("application/json");
    expect((await res.json<any>()).data[0].name).toBe(name);
    expect((await client.post("/keys", { name: "" })).status).toBe(400);
    expect((await client.post("/keys", { name: "x".repeat(65) })).status).toBe(400);
  });
});

describe("account isolation", () => {
  it("lets a user of one account see and touch nothing of another", async () => {
    const alice = await signedUp();
    const bob = await signedUp();
    const aliceKey = await alice.client.createKey("alice's key");
    const now = Date.now();
    await env.DB.prepare(
      `INSERT INTO usage_records (request_id, account_id, key_id, model, endpoint, cache_hit_tokens, cache_miss_tokens, completion_tokens,
         reasoning_tokens, cost_micros, price_tier, status, started_at, completed_at)
       VALUES ('req-alice-1', ?, ?, 'deepseek-chat', '/chat/completions', 0, 10, 5, 0, 123, 'standard', 'ok', ?, ?)`,
    )
      .bind(alice.accountId, aliceKey.id, now - 10, now)
      .run();
    await env.DB.prepare(
      "INSERT INTO usage_daily (day, account_id, key_id, model, requests, cost_micros) VALUES (?, ?, ?, 'deepseek-chat', 1, 123)",
    )
      .bind(new Date(now).toISOString().slice(0, 10), alice.accountId, aliceKey.id)
      .run();

    expect((await (await bob.client.get("/keys")).json<any>()).data).toHaveLength(0);
    expect((await bob.client.post(`/keys/${aliceKey.id}/revoke`)).status).toBe(404);
    expect((await (await bob.client.get("/usage/records")).json<any>()).data).toHaveLength(0);
    expect((await (await bob.client.get("/usage/daily")).json<any>()).data).toHaveLength(0);
    const bobExport = await (await bob.client.get("/usage/export?format=jsonl")).text();
    expect(bobExport).toBe("");
    const bobBalance = await (await bob.client.get("/balance")).json<any>();
    expect(JSON.stringify(bobBalance)).not.toContain("req-alice-1");
    // Bob's filter naming Alice's key finds nothing either.
    expect((await (await bob.client.get(`/usage/records?key_id=${aliceKey.id}`)).json<any>()).data).toHaveLength(0);
    // Operator pages are closed to both.
    expect((await bob.client.get("/admin/accounts")).status).toBe(403);

    expect((await (await alice.client.get("/usage/records")).json<any>()).data).toHaveLength(1);
    expect((await models(aliceKey.key)).status).toBe(200);
  });
});

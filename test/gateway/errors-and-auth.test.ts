// Authentication and the error envelope of the contract, status by status.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../workers/gateway/src/app";
import { keysChanged } from "../../workers/gateway/src/auth/keys-changed";
import { KEY_STATE_MAX_AGE_MS } from "../../workers/gateway/src/auth/key-state";
import { createAccount, createKey, credit, readyAccount } from "./setup/fixtures";
import { setupFakeWorker } from "./chat/helpers";

const BASE = "https://gw.test";
const balanceWith = (headers: Record<string, string>) => SELF.fetch(`${BASE}/user/balance`, { headers });
const chatBody = JSON.stringify({ model: "deepseek-chat", messages: [{ role: "user", content: "hi [[words:1]]" }] });
const postChat = (key: string, body: BodyInit = chatBody, headers: Record<string, string> = {}) =>
  SELF.fetch(`${BASE}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers }, body });

function expectEnvelope(body: any, type: string, message?: string | RegExp) {
  expect(Object.keys(body)).toEqual(["error"]);
  expect(Object.keys(body.error).sort()).toEqual(["code", "message", "param", "type"]);
  expect(body.error.type).toBe(type);
  if (typeof message === "string") expect(body.error.message).toBe(message);
  else if (message) expect(body.error.message).toMatch(message);
}

describe("authentication", () => {
  it("401 for a missing key", async () => {
    const res = await balanceWith({});
    expect(res.status).toBe(401);
    expectEnvelope(await res.json(), "authentication_error", "Authentication Fails, Your api key: **** is invalid");
    expect(res.headers.get("x-ds-trace-id")).toBeTruthy();
  });

  it("401 for a malformed key, naming only its last four characters", async () => {
    const res = await balanceWith({ authorization: "Bearer not-a-key-wxyz" });
    expect(res.status).toBe(401);
    expectEnvelope(await res.json(), "authentication_error", "Authentication Fails, Your api key: ****wxyz is invalid");
  });

  it("401 for an unknown well-formed key", async () => {
    const res = await balanceWith({ authorization: `Bearer sk-${"0".repeat(28)}abcd` });
    expect(res.status).toBe(401);
    expectEnvelope(await res.json(), "authentication_error", "Authentication Fails, Your api key: ****abcd is invalid");
  });

  // Twice: the first request looks the key up in D1, later ones check the account's keys in memory.
  const useTwice = async (key: string) => {
    for (let i = 0; i < 2; i++) expect((await balanceWith({ authorization: `Bearer ${key}` })).status).toBe(200);
  };

  it("a revoked key fails on the next request", async () => {
    const account = await createAccount();
    const { key, keyId } = await createKey(account);
    await useTwice(key);
    // What the dashboard's revoke does: the D1 row, then the account's keys are told.
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), keyId).run();
    await keysChanged(env, account);
    const res = await balanceWith({ authorization: `Bearer ${key}` });
    expect(res.status).toBe(401);
    expectEnvelope(await res.json(), "authentication_error", `Authentication Fails, Your api key: ****${key.slice(-4)} is invalid`);
  });

  it("a key revoked in D1 behind the gateway's back (the operator CLI) fails once KEY_STATE_MAX_AGE_MS has passed", async () => {
    const account = await createAccount();
    const { key, keyId } = await createKey(account);
    await useTwice(key);
    await env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ?").bind(Date.now(), keyId).run();
    await new Promise((r) => setTimeout(r, KEY_STATE_MAX_AGE_MS + 50));
    expect((await balanceWith({ authorization: `Bearer ${key}` })).status).toBe(401);
  });

  it("accepts a key created after its account's keys were read, at once", async () => {
    const account = await createAccount();
    await useTwice((await createKey(account)).key);
    const newer = await createKey(account);
    await useTwice(newer.key);
  });

  it("accepts the key as x-api-key", async () => {
    const account = await createAccount();
    const { key } = await createKey(account);
    expect((await balanceWith({ "x-api-key": key })).status).toBe(200);
  });

  it("stores keys only as hashes", async () => {
    const account = await createAccount();
    const { key } = await createKey(account);
    const rows = await env.DB.prepare("SELECT * FROM api_keys WHERE account_id = ?").bind(account).all();
    expect(JSON.stringify(rows.results)).not.toContain(key);
    expect(JSON.stringify(rows.results)).not.toContain(key.slice(3));
  });
});

describe("account isolation", () => {
  it("a key of one account never sees another account's balance", async () => {
    const a = await createAccount("a");
    const b = await createAccount("b");
    await credit(a, "topped_up", 5_000_000);
    await credit(b, "topped_up", 70_000_000);
    const keyA = (await createKey(a)).key;
    const keyB = (await createKey(b)).key;
    const balA = await (await balanceWith({ authorization: `Bearer ${keyA}` })).json<any>();
    const balB = await (await balanceWith({ authorization: `Bearer ${keyB}` })).json<any>();
    expect(balA.balance_infos[0].total_balance).toBe("5.00");
    expect(balB.balance_infos[0].total_balance).toBe("70.00");
  });

  it("a new account with no credit is not available", async () => {
    const { key } = await createKey(await createAccount());
    expect(await (await balanceWith({ authorization: `Bearer ${key}` })).json()).toEqual({
      is_available: false,
      balance_infos: [{ currency: "USD", total_balance: "0.00", granted_balance: "0.00", topped_up_balance: "0.00" }],
    });
  });
});

describe("the error envelope for every status", () => {
  it("400 for malformed JSON", async () => {
    const { key } = await readyAccount();
    const res = await postChat(key, "{not json");
    expect(res.status).toBe(400);
    expectEnvelope(await res.json(), "invalid_request_error", /JSON/);
  });

  it("400 Model Not Exist", async () => {
    const { key } = await readyAccount();
    const res = await postChat(key, JSON.stringify({ model: "gpt-9", messages: [{ role: "user", content: "x" }] }));
    expect(res.status).toBe(400);
    expectEnvelope(await res.json(), "invalid_request_error", "Model Not Exist");
  });

  it("402 Insufficient Balance", async () => {
    const { key } = await readyAccount(0);
    await setupFakeWorker();
    const res = await postChat(key);
    expect(res.status).toBe(402);
    expectEnvelope(await res.json(), "insufficient_balance_error", "Insufficient Balance");
  });

  it("404 for an unknown route, even without a key", async () => {
    const res = await SELF.fetch(`${BASE}/v1/nothing-here`);
    expect(res.status).toBe(404);
    expectEnvelope(await res.json(), "not_found_error", /Not Found/);
  });

  it("422 for an out-of-range parameter", async () => {
    const { key } = await readyAccount();
    const res = await postChat(key, JSON.stringify({ model: "deepseek-chat", temperature: 3, messages: [{ role: "user", content: "x" }] }));
    expect(res.status).toBe(422);
    expectEnvelope(await res.json(), "invalid_request_error", /temperature/);
  });

  it("429 Rate Limit Reached with Retry-After", async () => {
    const { key, account } = await readyAccount();
    await setupFakeWorker();
    await env.DB.prepare("UPDATE accounts SET rpm_limit = 1 WHERE id = ?").bind(account).run();
    await keysChanged(env, account);
    expect((await postChat(key)).status).toBe(200);
    const res = await postChat(key);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expectEnvelope(await res.json(), "rate_limit_error", "Rate Limit Reached");
  });

  it("500 for an unexpected failure, without internals", async () => {
    const app = buildApp();
    app.get("/boom", () => {
      throw new Error("secret internal detail");
    });
    const res = await app.request("/boom", {}, env, { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as any);
    expect(res.status).toBe(500);
    const body = await res.json<any>();
    expectEnvelope(body, "api_error");
    expect(JSON.stringify(body)).not.toContain("secret internal detail");
  });

  it("refuses a body over 8 MiB declared by content-length, without reading it", async () => {
    const { key } = await readyAccount();
    const big = "x".repeat(9 * 1024 * 1024);
    const res = await postChat(key, big);
    expect(res.status).toBe(413);
    expectEnvelope(await res.json(), "invalid_request_error", /too large/);
  });

  it("refuses a streamed body once it passes 8 MiB, and keeps serving", async () => {
    const { key } = await readyAccount();
    const piece = new Uint8Array(1024 * 1024).fill(120);
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 64) return controller.close();
        sent++;
        controller.enqueue(piece);
      },
    });
    const res = await SELF.fetch(`${BASE}/chat/completions`, { method: "POST", headers: { authorization: `Bearer ${key}` }, body, duplex: "half" } as RequestInit);
    expect(res.status).toBe(413);
    expect(sent).toBeLessThan(64);
    expect((await balanceWith({ authorization: `Bearer ${key}` })).status).toBe(200);
  });
});

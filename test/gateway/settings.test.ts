// Numeric settings (wrangler.toml vars) are read through intSetting: a value that is not a whole
// number in range fails the request with a 500 in the endpoint's error format and a log line
// naming the variable, and changes nothing; it never becomes a NaN timer or hold.
import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { afterEach, describe, expect, it, vi } from "vitest";
import { buildApp } from "../../workers/gateway/src/app";
import { intSetting } from "../../workers/gateway/src/env";
import { runUsageRetention } from "../../workers/gateway/src/usage-archive/archive";
import { BASE, fakeRequests, readyClient } from "./chat/helpers";
import { ORIGIN } from "./dashboard/browser-client";

const app = buildApp();

async function call(vars: Record<string, string>, url: string, headers: Record<string, string>, body: unknown): Promise<Response> {
  const ctx = createExecutionContext();
  const init = { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
  const res = await app.fetch(new Request(url, init), { ...env, ...vars }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const chatBody = (content: string) => ({ model: "deepseek-chat", max_tokens: 8, messages: [{ role: "user", content }] });

afterEach(() => void vi.restoreAllMocks());

describe("intSetting", () => {
  it("is the default when unset and the integer when given", () => {
    expect(intSetting({}, "HOLD_TTL_MS", 60_000)).toBe(60_000);
    expect(intSetting({ HOLD_TTL_MS: "5000" }, "HOLD_TTL_MS", 60_000)).toBe(5000);
    expect(intSetting({ HOLD_TTL_MS: 5000 }, "HOLD_TTL_MS", 60_000)).toBe(5000);
    expect(intSetting({ SIGNUP_GRANT_MICROS: "0" }, "SIGNUP_GRANT_MICROS", 0, 0)).toBe(0);
  });

  it.each(["", "5s", "1e3", "1.5", "-1", "0", "NaN", "0x10", "99999999999999999999"])("refuses %j, naming the variable", (raw) => {
    expect(() => intSetting({ HOLD_TTL_MS: raw }, "HOLD_TTL_MS", 60_000)).toThrow(`HOLD_TTL_MS must be an integer of at least 1, not ${JSON.stringify(raw)}`);
  });
});

describe("a misconfigured gateway", () => {
  it.each([
    [{ HOLD_TTL_MS: "5s" }, "HOLD_TTL_MS must be an integer"],
    [{ HOLD_HEARTBEAT_MS: "" }, "HOLD_HEARTBEAT_MS must be an integer"],
    [{ HOLD_HEARTBEAT_MS: "5000", HOLD_TTL_MS: "5000" }, "HOLD_HEARTBEAT_MS (5000) must be less than HOLD_TTL_MS (5000)"],
    [{ KEEPALIVE_INTERVAL_MS: "0" }, "KEEPALIVE_INTERVAL_MS must be an integer"],
    [{ UPSTREAM_CONNECT_TIMEOUT_MS: "ten seconds" }, "UPSTREAM_CONNECT_TIMEOUT_MS must be an integer"],
  ])("%j: a chat request gets a 500, nothing is held or forwarded, the log names it", async (vars, logged) => {
    const { key } = await readyClient();
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const content = `misconfigured ${crypto.randomUUID()}`;
    const res = await call(vars, `${BASE}/chat/completions`, { authorization: `Bearer ${key}` }, chatBody(content));
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ error: { type: "api_error", code: "internal_error" } });
    expect(errors.mock.calls.some((args) => args.some((a) => String(a instanceof Error ? a.message : a).includes(logged)))).toBe(true);
    const balance = await SELF.fetch(`${BASE}/user/balance`, { headers: { authorization: `Bearer ${key}` } });
    expect((await balance.json<any>()).balance_infos[0]).toMatchObject({ total_balance: "10.00" });
    expect((await fakeRequests()).some((r) => JSON.stringify(r).includes(content))).toBe(false);
  });

  it("answers the Anthropic endpoint in its own error format", async () => {
    const { key } = await readyClient();
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const res = await call({ HOLD_TTL_MS: "1h" }, `${BASE}/anthropic/v1/messages`, { "x-api-key": key }, chatBody("hi"));
    expect(res.status).toBe(500);
    expect(await res.json()).toMatchObject({ type: "error", error: { type: "api_error" } });
  });

  it("refuses a sign-up under a malformed SIGNUP_GRANT_MICROS without creating the user", async () => {
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    const email = `g${crypto.randomUUID().slice(0, 8)}@example.com`;
    const res = await call({ SIGNUP_GRANT_MICROS: "5 USD" }, `${ORIGIN}/dashboard/api/auth/signup`, { origin: ORIGIN }, { email, password: "long enough password" });
    expect(res.status).toBe(500);
    expect(errors.mock.calls.flat().some((a) => String(a).includes("SIGNUP_GRANT_MICROS"))).toBe(true);
    expect(await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(email).first()).toBeNull();
  });

  it("stops the retention run on a malformed RETENTION_DAYS", async () => {
    await expect(runUsageRetention({ ...env, RETENTION_DAYS: "a month" })).rejects.toThrow("RETENTION_DAYS must be an integer of at least 1");
  });
});

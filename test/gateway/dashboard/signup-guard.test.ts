// Sign-up under production rules: Turnstile verified server-side (a stand-in siteverify here),
// closed when no Turnstile secret is configured, and no free credit unless configured.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import { buildApp } from "../../../workers/gateway/src/app";
import { TURNSTILE_PASSING_TOKEN, TURNSTILE_TEST_SECRET } from "../../support/fake-turnstile";
import { ORIGIN } from "./browser-client";

const app = buildApp();
const email = () => `h${crypto.randomUUID().slice(0, 8)}@example.com`;

async function call(vars: Record<string, string>, method: string, path: string, json?: unknown): Promise<Response> {
  const ctx = createExecutionContext();
  const init: RequestInit = { method, headers: { "content-type": "application/json", origin: ORIGIN } };
  if (json !== undefined) init.body = JSON.stringify(json);
  const res = await app.fetch(new Request(`${ORIGIN}/dashboard/api${path}`, init), { ...env, ...vars }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const production = () => ({
  ENVIRONMENT: "production",
  SIGNUP_GRANT_MICROS: "0",
  TURNSTILE_SITE_KEY: "0x4AAAAAAAtestsitekey",
  TURNSTILE_SECRET_KEY: TURNSTILE_TEST_SECRET,
  TURNSTILE_VERIFY_URL: inject("turnstileVerifyUrl"),
});
const verifierCalls = async () => ((await (await fetch(inject("turnstileVerifyUrl"))).json()) as { calls: number }).calls;

async function grantOf(accountId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COALESCE(SUM(amount_micros), 0) AS total FROM balance_credits WHERE account_id = ?").bind(accountId).first<{ total: number }>();
  return row!.total;
}

describe("sign-up guarded by Turnstile", () => {
  it("creates the account only with a token siteverify accepts; no grant by default in production", async () => {
    const vars = production();
    const before = await verifierCalls();
    const missing = await call(vars, "POST", "/auth/signup", { email: email(), password: "long enough password" });
    expect(missing.status).toBe(400);
    expect((await missing.json<any>()).error.param).toBe("turnstile_token");

    const address = email();
    const bot = await call(vars, "POST", "/auth/signup", { email: address, password: "long enough password", turnstile_token: "forged" });
    expect(bot.status).toBe(403);
    expect((await bot.json<any>()).error.code).toBe("turnstile_failed");
    expect(await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(address).first()).toBeNull();

    const human = await call(vars, "POST", "/auth/signup", { email: address, password: "long enough password", turnstile_token: TURNSTILE_PASSING_TOKEN });
    expect(human.status).toBe(201);
    const { account_id } = await human.json<any>();
    expect(await grantOf(account_id)).toBe(0);
    expect(await verifierCalls()).toBe(before + 2); // the missing token never reached siteverify
  });

  it("the grant is configuration: an operator-set amount is granted", async () => {
    const res = await call({ ...production(), SIGNUP_GRANT_MICROS: "250000" }, "POST", "/auth/signup", {
      email: email(),
      password: "long enough password",
      turnstile_token: TURNSTILE_PASSING_TOKEN,
    });
    expect(res.status).toBe(201);
    expect(await grantOf((await res.json<any>()).account_id)).toBe(250_000);
  });

  it("outside development, no Turnstile secret closes sign-up instead of leaving it unguarded", async () => {
    const { TURNSTILE_SECRET_KEY: _unset, ...vars } = production();
    const res = await call({ ...vars, TURNSTILE_SECRET_KEY: "" }, "POST", "/auth/signup", { email: email(), password: "long enough password" });
    expect(res.status).toBe(503);
    expect((await res.json<any>()).error.message).toContain("TURNSTILE_SECRET_KEY");
  });

  it("a verifier that does not answer siteverify's JSON is a 503, not an account", async () => {
    const address = email();
    const res = await call({ ...production(), TURNSTILE_VERIFY_URL: `${inject("badWorkers").edge}/siteverify` }, "POST", "/auth/signup", {
      email: address,
      password: "long enough password",
      turnstile_token: TURNSTILE_PASSING_TOKEN,
    });
    expect(res.status).toBe(503);
    expect(await env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(address).first()).toBeNull();
  });

  it("the sign-up page learns the site key; locally there is none and sign-up needs no token", async () => {
    expect(await (await call(production(), "GET", "/auth/signup-config")).json()).toEqual({ turnstile_site_key: "0x4AAAAAAAtestsitekey" });
    expect(await (await call({}, "GET", "/auth/signup-config")).json()).toEqual({ turnstile_site_key: null });
    expect((await call({}, "POST", "/auth/signup", { email: email(), password: "long enough password" })).status).toBe(201);
  });
});

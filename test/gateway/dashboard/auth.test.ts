import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { DashboardClient, signedUp } from "./browser-client";

describe("sign-up", () => {
  it("creates a user, an owned account with a cache namespace, the starting grant and a session", async () => {
    const { client, email, accountId } = await signedUp();
    const user = await env.DB.prepare("SELECT * FROM users WHERE email = ?").bind(email).first<Record<string, unknown>>();
    expect(user?.password_iterations).toBe(100_000);
    expect(String(user?.password_hash)).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(user)).not.toContain("correct horse");
    const account = await env.DB.prepare("SELECT * FROM accounts WHERE id = ?").bind(accountId).first<Record<string, unknown>>();
    expect(account?.owner_user_id).toBe(user?.id);
    expect(String(account?.cache_namespace)).toMatch(/^[0-9a-f]{32}$/);

    const balance = await (await client.get("/balance")).json<any>();
    expect(balance.balances[0]).toMatchObject({ currency: "USD", granted_micros: 5_000_000, topped_up_micros: 0 });
    expect(balance.credits[0]).toMatchObject({ kind: "granted", amount_micros: 5_000_000, note: "sign-up grant" });
  });

  it("sets the session cookie HttpOnly, Secure and SameSite=Strict", async () => {
    const res = await SELF.fetch("https://gw.test/dashboard/api/auth/signup", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ email: "cookie@example.com", password: "long enough password" }),
    });
    expect(res.status).toBe(201);
    const cookie = res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/^__Host-dash_session=[0-9a-f]{64};/);
    expect(cookie).toContain("HttpOnly");
    expect(cookie).toContain("Secure");
    expect(cookie).toContain("SameSite=Strict");
    expect(cookie).toContain("Path=/");
  });

  it("refuses a taken email, a short password and a malformed email", async () => {
    const { email } = await signedUp();
    const other = new DashboardClient();
    expect((await other.post("/auth/signup", { email: email.toUpperCase(), password: "another password" })).status).toBe(409);
    expect((await other.post("/auth/signup", { email: "new@example.com", password: "short" })).status).toBe(400);
    expect((await other.post("/auth/signup", { email: "nope", password: "long enough password" })).status).toBe(400);
  });
});

describe("sign-in and sign-out", () => {
  it("signs in with the right password only", async () => {
    const { email, password } = await signedUp();
    const fresh = new DashboardClient();
    const wrong = await fresh.signIn(email, "wrong password!");
    expect(wrong.status).toBe(401);
    expect((await wrong.json<any>()).error.code).toBe("bad_credentials");
    expect((await fresh.signIn("nobody@example.com", password)).status).toBe(401);
    expect((await fresh.signIn(email, password)).status).toBe(200);
    const session = await (await fresh.get("/auth/session")).json<any>();
    expect(session).toMatchObject({ signed_in: true, user: { email, role: "user" } });
  });

  it("rate limits sign-in attempts per email", async () => {
    const { email, password } = await signedUp();
    const attacker = new DashboardClient();
    const statuses: number[] = [];
    for (let i = 0; i < 11; i++) statuses.push((await attacker.signIn(email, `guess number ${i}`)).status);
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true);
    const blocked = await attacker.signIn(email, password);
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("signs out this session, and everywhere", async () => {
    const { client: laptop, email, password } = await signedUp();
    const phone = new DashboardClient();
    await phone.signIn(email, password);
    const tablet = new DashboardClient();
    await tablet.signIn(email, password);

    expect((await tablet.post("/auth/signout")).status).toBe(200);
    expect((await tablet.get("/keys")).status).toBe(401);
    expect((await phone.get("/keys")).status).toBe(200);

    const stolenCookie = phone.cookie;
    expect((await laptop.post("/auth/signout-everywhere")).status).toBe(200);
    expect((await laptop.get("/keys")).status).toBe(401);
    expect((await phone.get("/keys")).status).toBe(401);
    const replay = new DashboardClient();
    replay.cookie = stolenCookie;
    expect((await replay.get("/keys")).status).toBe(401);

    // A new sign-in after that works again.
    const again = new DashboardClient();
    expect((await again.signIn(email, password)).status).toBe(200);
    expect((await again.get("/keys")).status).toBe(200);
  });

  it("answers unknown dashboard API paths with the JSON error envelope", async () => {
    const res = await SELF.fetch("https://gw.test/dashboard/api/nothing-here");
    expect(res.status).toBe(404);
    expect((await res.json<any>()).error.type).toBe("not_found_error");
    const api = await SELF.fetch("https://gw.test/no/such/api");
    expect(api.status).toBe(404);
    expect((await api.json<any>()).error).toBeTruthy();
  });
});

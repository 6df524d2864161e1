// Password change, one-time reset tokens and rehashing of old password hashes.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { toHex } from "../../../workers/gateway/src/auth/api-keys";
import { newResetToken, RESET_TOKEN_TTL_MS } from "../../../workers/gateway/src/dashboard/password-reset";
import { PBKDF2_ITERATIONS } from "../../../workers/gateway/src/dashboard/passwords";
import { DashboardClient, signedUp } from "./browser-client";

const NEW_PASSWORD = "a brand new passphrase";

async function signedInAgain(email: string, password: string): Promise<DashboardClient> {
  const client = new DashboardClient();
  const res = await client.signIn(email, password);
  expect(res.status).toBe(200);
  return client;
}

async function userRow(email: string) {
  return env.DB.prepare("SELECT id, password_hash, password_iterations, session_epoch FROM users WHERE email = ?")
    .bind(email)
    .first<{ id: string; password_hash: string; password_iterations: number; session_epoch: number }>();
}

async function issueReset(userId: string, expiresAt = Date.now() + RESET_TOKEN_TTL_MS): Promise<string> {
  const { token, tokenHash } = await newResetToken();
  await env.DB.prepare("INSERT INTO password_resets (token_hash, user_id, expires_at) VALUES (?, ?, ?)").bind(tokenHash, userId, expiresAt).run();
  return token;
}

describe("password change", () => {
  it("needs the current password, ends the other sessions and keeps this one", async () => {
    const { client, email, password } = await signedUp();
    const other = await signedInAgain(email, password);
    const before = await userRow(email);

    const wrong = await client.post("/auth/password", { current_password: "not the password", new_password: NEW_PASSWORD });
    expect(wrong.status).toBe(400);
    expect((await wrong.json<any>()).error).toMatchObject({ code: "bad_credentials", param: "current_password" });
    const short = await client.post("/auth/password", { current_password: password, new_password: "short" });
    expect(short.status).toBe(400);
    expect((await short.json<any>()).error.param).toBe("new_password");
    expect(await userRow(email)).toEqual(before); // nothing changed
    expect((await other.get("/keys")).status).toBe(200);

    const changed = await client.post("/auth/password", { current_password: password, new_password: NEW_PASSWORD });
    expect(changed.status).toBe(200);
    client.csrf = (await changed.json<any>()).csrf_token;
    expect((await client.get("/keys")).status).toBe(200);
    expect((await client.createKey("after change")).name).toBe("after change");
    expect((await other.get("/keys")).status).toBe(401);

    expect((await new DashboardClient().signIn(email, password)).status).toBe(401);
    await signedInAgain(email, NEW_PASSWORD);
  });

  it("is refused without a session or without the CSRF token", async () => {
    const { client, password } = await signedUp();
    expect((await new DashboardClient().post("/auth/password", { current_password: password, new_password: NEW_PASSWORD })).status).toBe(401);
    const noCsrf = await client.fetch("/auth/password", { method: "POST", json: { current_password: password, new_password: NEW_PASSWORD }, headers: { "x-csrf-token": "x" } });
    expect(noCsrf.status).toBe(403);
  });
});

describe("password reset", () => {
  it("a one-time token sets a new password once and ends every session", async () => {
    const { client, email, password } = await signedUp();
    const user = (await userRow(email))!;
    const token = await issueReset(user.id);
    const stored = await env.DB.prepare("SELECT token_hash FROM password_resets WHERE user_id = ?").bind(user.id).first<{ token_hash: string }>();
    expect(stored!.token_hash).not.toBe(token); // only the hash is kept

    const anonymous = new DashboardClient();
    const res = await anonymous.post("/auth/password-reset", { token, new_password: NEW_PASSWORD });
    expect(res.status).toBe(200);
    expect((await client.get("/keys")).status).toBe(401);
    expect((await new DashboardClient().signIn(email, password)).status).toBe(401);
    await signedInAgain(email, NEW_PASSWORD);

    const again = await anonymous.post("/auth/password-reset", { token, new_password: "yet another passphrase" });
    expect(again.status).toBe(400);
    expect((await again.json<any>()).error.code).toBe("invalid_reset_token");
    await signedInAgain(email, NEW_PASSWORD);
  });

  it("refuses expired, unknown and malformed tokens, changing nothing", async () => {
    const { email, password } = await signedUp();
    const user = (await userRow(email))!;
    const expired = await issueReset(user.id, Date.now() - 1);
    for (const token of [expired, (await newResetToken()).token]) {
      const res = await new DashboardClient().post("/auth/password-reset", { token, new_password: NEW_PASSWORD });
      expect(res.status).toBe(400);
      expect((await res.json<any>()).error.code).toBe("invalid_reset_token");
    }
    const malformed = await new DashboardClient().post("/auth/password-reset", { token: "abc", new_password: NEW_PASSWORD });
    expect(malformed.status).toBe(400);
    expect((await malformed.json<any>()).error.param).toBe("token");
    expect(await userRow(email)).toEqual(user);
    await signedInAgain(email, password);
  });

  it("a password change spends the tokens still pending", async () => {
    const { client, email, password } = await signedUp();
    const token = await issueReset((await userRow(email))!.id);
    expect((await client.post("/auth/password", { current_password: password, new_password: NEW_PASSWORD })).status).toBe(200);
    expect((await new DashboardClient().post("/auth/password-reset", { token, new_password: "attacker's choice!" })).status).toBe(400);
  });
});

describe("rehash on sign-in", () => {
  it("a password hashed with fewer PBKDF2 iterations is hashed again with the current parameters", async () => {
    const email = `old-${crypto.randomUUID().slice(0, 8)}@example.com`;
    const password = "an old but fine password";
    const salt = crypto.getRandomValues(new Uint8Array(16));
    const material = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveBits"]);
    const oldHash = toHex(await crypto.subtle.deriveBits({ name: "PBKDF2", hash: "SHA-256", salt, iterations: 1_000 }, material, 256));
    const userId = `usr_${crypto.randomUUID().slice(0, 8)}`;
    await env.DB.batch([
      env.DB.prepare("INSERT INTO users (id, email, password_hash, password_salt, password_iterations) VALUES (?, ?, ?, ?, 1000)").bind(userId, email, oldHash, toHex(salt)),
      env.DB.prepare("INSERT INTO accounts (id, name, owner_user_id, cache_namespace) VALUES (?, ?, ?, 'ns')").bind(`acct_${userId}`, email, userId),
    ]);

    await signedInAgain(email, password);
    const after = (await userRow(email))!;
    expect(after.password_iterations).toBe(PBKDF2_ITERATIONS);
    expect(after.password_hash).not.toBe(oldHash);
    await signedInAgain(email, password); // the new hash verifies
    expect((await new DashboardClient().signIn(email, "wrong password!!")).status).toBe(401);
  });
});

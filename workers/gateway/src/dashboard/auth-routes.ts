// Sign-up, sign-in, sign-out (here and everywhere) and the current session.
import { Hono } from "hono";
import { z } from "zod";
import { randomHex } from "../auth/api-keys";
import { intSetting } from "../env";
import { parseBody } from "./body";
import { csrfBeforeSignIn, csrfWithSession } from "./csrf";
import type { DashboardAppEnv } from "./env";
import { badCredentials, conflict } from "./errors";
import { rehashIfOld } from "./password-routes";
import { burnPasswordCheck, hashPassword, verifyPassword } from "./passwords";
import { endAllSessions, endSession, loadSession, requireSession, startSession } from "./sessions";
import { throttleAttempt } from "./throttle";
import { requireHuman } from "./turnstile";

const ATTEMPTS_PER_EMAIL = 10;
const ATTEMPTS_PER_ADDRESS = 50;

const credentials = z.object({
  email: z
    .string()
    .trim()
    .toLowerCase()
    .max(254)
    .regex(/^[^\s@]+@[^\s@]+\.[^\s@]+$/, "not an email address"),
  password: z.string().min(1).max(1024),
});
const newCredentials = credentials.extend({
  password: z.string().min(10, "use at least 10 characters").max(1024),
  turnstile_token: z.string().max(4096).optional(),
});

export const authRoutes = new Hono<DashboardAppEnv>()
  .post("/signup", csrfBeforeSignIn, async (c) => {
    const grant = intSetting(c.env, "SIGNUP_GRANT_MICROS", 0, 0);
    const { email, password, turnstile_token } = await parseBody(c, newCredentials);
    await throttleAttempt(c, `address:${c.req.header("cf-connecting-ip") ?? "local"}`, ATTEMPTS_PER_ADDRESS);
    await requireHuman(c, turnstile_token);
    const existing = await c.env.DB.prepare("SELECT id FROM users WHERE email = ?").bind(email).first();
    if (existing) throw conflict("An account with this email already exists");

    const pw = await hashPassword(password);
    const userId = `usr_${randomHex(12)}`;
    const accountId = `acct_${randomHex(12)}`;
    const statements = [
      c.env.DB.prepare(
        "INSERT INTO users (id, email, password_hash, password_salt, password_iterations) VALUES (?, ?, ?, ?, ?)",
      ).bind(userId, email, pw.hash, pw.salt, pw.iterations),
      c.env.DB.prepare("INSERT INTO accounts (id, name, owner_user_id, cache_namespace) VALUES (?, ?, ?, ?)").bind(
        accountId,
        email,
        userId,
        randomHex(16),
      ),
    ];
    if (grant > 0) {
      statements.push(
        c.env.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros, note) VALUES (?, 'granted', ?, 'sign-up grant')").bind(
          accountId,
          grant,
        ),
      );
    }
    try {
      await c.env.DB.batch(statements);
    } catch (err) {
      if (String(err).includes("UNIQUE")) throw conflict("An account with this email already exists");
      throw err;
    }
    const csrfToken = await startSession(c, userId, 0);
    return c.json({ user: { email, role: "user" }, account_id: accountId, csrf_token: csrfToken }, 201);
  })

  .post("/signin", csrfBeforeSignIn, async (c) => {
    const { email, password } = await parseBody(c, credentials);
    await throttleAttempt(c, `address:${c.req.header("cf-connecting-ip") ?? "local"}`, ATTEMPTS_PER_ADDRESS);
    await throttleAttempt(c, `email:${email}`, ATTEMPTS_PER_EMAIL);
    const user = await c.env.DB.prepare(
      "SELECT id, role, password_hash, password_salt, password_iterations, session_epoch FROM users WHERE email = ?",
    )
      .bind(email)
      .first<{ id: string; role: string; password_hash: string; password_salt: string; password_iterations: number; session_epoch: number }>();
    if (!user) {
      await burnPasswordCheck(password);
      throw badCredentials();
    }
    const stored = { hash: user.password_hash, salt: user.password_salt, iterations: user.password_iterations };
    if (!(await verifyPassword(password, stored))) throw badCredentials();
    await rehashIfOld(c.env.DB, user.id, password, stored);
    const ns = c.env.SIGNIN_THROTTLE;
    if (ns) await ns.get(ns.idFromName(`email:${email}`)).clear();
    const csrfToken = await startSession(c, user.id, user.session_epoch);
    return c.json({ user: { email, role: user.role }, csrf_token: csrfToken });
  })

  // What the sign-up page needs to render: the Turnstile widget's site key, if any.
  .get("/signup-config", (c) => c.json({ turnstile_site_key: c.env.TURNSTILE_SITE_KEY || null }))

  .get("/session", async (c) => {
    const session = await loadSession(c);
    if (!session) return c.json({ signed_in: false });
    return c.json({
      signed_in: true,
      user: { email: session.email, role: session.role },
      account_id: session.accountId,
      csrf_token: session.csrfToken,
    });
  })

  .post("/signout", requireSession, csrfWithSession, async (c) => {
    await endSession(c, c.get("session").sessionHash);
    return c.json({ signed_out: true });
  })

  .post("/signout-everywhere", requireSession, csrfWithSession, async (c) => {
    await endAllSessions(c, c.get("session").userId);
    return c.json({ signed_out: true });
  });

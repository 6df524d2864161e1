// Browser sessions: a random token in an HttpOnly, Secure, SameSite=Strict cookie; D1 keeps only
// its SHA-256, the CSRF token that goes with it and the user's session epoch at sign-in.
// Bumping users.session_epoch ("sign out everywhere") invalidates every older session.
import type { Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import { randomHex, sha256Hex } from "../auth/api-keys";
import type { DashboardAppEnv, DashboardSession } from "./env";
import { notSignedIn } from "./errors";

export const SESSION_COOKIE = "__Host-dash_session";
export const SESSION_TTL_MS = 7 * 24 * 3600_000;

export async function startSession(c: Context<DashboardAppEnv>, userId: string, epoch: number): Promise<string> {
  const token = randomHex(32);
  const csrfToken = randomHex(32);
  const expiresAt = Date.now() + SESSION_TTL_MS;
  await c.env.DB.prepare("INSERT INTO sessions (id_hash, user_id, csrf_token, epoch, expires_at) VALUES (?, ?, ?, ?, ?)")
    .bind(await sha256Hex(token), userId, csrfToken, epoch, expiresAt)
    .run();
  setCookie(c, SESSION_COOKIE, token, {
    path: "/",
    httpOnly: true,
    secure: true,
    sameSite: "Strict",
    maxAge: SESSION_TTL_MS / 1000,
  });
  return csrfToken;
}

export function clearSessionCookie(c: Context<DashboardAppEnv>): void {
  deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true, httpOnly: true, sameSite: "Strict" });
}

interface SessionRow {
  user_id: string;
  email: string;
  role: "user" | "admin";
  csrf_token: string;
  account_id: string | null;
}

export async function loadSession(c: Context<DashboardAppEnv>): Promise<DashboardSession | null> {
  const token = getCookie(c, SESSION_COOKIE);
  if (!token || !/^[0-9a-f]{64}$/.test(token)) return null;
  const sessionHash = await sha256Hex(token);
  const row = await c.env.DB.prepare(
    `SELECT s.user_id, u.email, u.role, s.csrf_token,
            (SELECT a.id FROM accounts a WHERE a.owner_user_id = u.id ORDER BY a.created_at LIMIT 1) AS account_id
       FROM sessions s JOIN users u ON u.id = s.user_id
      WHERE s.id_hash = ? AND s.expires_at > ? AND s.epoch = u.session_epoch`,
  )
    .bind(sessionHash, Date.now())
    .first<SessionRow>();
  if (!row || !row.account_id) return null;
  return { sessionHash, userId: row.user_id, email: row.email, role: row.role, accountId: row.account_id, csrfToken: row.csrf_token };
}

export const requireSession = createMiddleware<DashboardAppEnv>(async (c, next) => {
  const session = await loadSession(c);
  if (!session) throw notSignedIn();
  c.set("session", session);
  await next();
});

export async function endSession(c: Context<DashboardAppEnv>, sessionHash: string): Promise<void> {
  await c.env.DB.prepare("DELETE FROM sessions WHERE id_hash = ?").bind(sessionHash).run();
  clearSessionCookie(c);
}

export async function endAllSessions(c: Context<DashboardAppEnv>, userId: string): Promise<void> {
  await c.env.DB.batch([
    c.env.DB.prepare("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?").bind(userId),
    c.env.DB.prepare("DELETE FROM sessions WHERE user_id = ?").bind(userId),
  ]);
  clearSessionCookie(c);
}

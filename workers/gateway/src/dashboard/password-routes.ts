// Password change (signed in, with the current password) and password reset (with a one-time
// token from the operator, password-reset.ts). Either ends every session of the user and spends
// the user's pending reset tokens; a change signs this browser in again. Passwords hashed with
// old parameters are hashed again at sign-in (rehashIfOld, called by auth-routes.ts).
import { Hono } from "hono";
import { z } from "zod";
import { sha256Hex } from "../auth/api-keys";
import { parseBody } from "./body";
import { csrfBeforeSignIn, csrfWithSession } from "./csrf";
import type { DashboardAppEnv } from "./env";
import { invalidResetToken, notSignedIn, wrongCurrentPassword } from "./errors";
import { hashPassword, needsRehash, type PasswordHash, verifyPassword } from "./passwords";
import { RESET_TOKEN_PATTERN } from "./password-reset";
import { requireSession, startSession } from "./sessions";
import { throttleAttempt } from "./throttle";

const CHANGES_PER_USER = 10;
const RESETS_PER_ADDRESS = 50;

const newPassword = z.string().min(10, "use at least 10 characters").max(1024);
const change = z.object({ current_password: z.string().min(1).max(1024), new_password: newPassword });
const reset = z.object({ token: z.string().regex(RESET_TOKEN_PATTERN, "not a reset token"), new_password: newPassword });

function replacePassword(db: D1Database, userId: string, pw: PasswordHash, now: number): D1PreparedStatement[] {
  return [
    db
      .prepare("UPDATE users SET password_hash = ?, password_salt = ?, password_iterations = ?, session_epoch = session_epoch + 1 WHERE id = ?")
      .bind(pw.hash, pw.salt, pw.iterations, userId),
    db.prepare("DELETE FROM sessions WHERE user_id = ?").bind(userId),
    db.prepare("UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL").bind(now, userId),
  ];
}

export async function rehashIfOld(db: D1Database, userId: string, password: string, stored: PasswordHash): Promise<void> {
  if (!needsRehash(stored)) return;
  const pw = await hashPassword(password);
  // Only over the hash that was checked: a password changed meanwhile stays changed.
  await db
    .prepare("UPDATE users SET password_hash = ?, password_salt = ?, password_iterations = ? WHERE id = ? AND password_hash = ?")
    .bind(pw.hash, pw.salt, pw.iterations, userId, stored.hash)
    .run();
}

export const passwordRoutes = new Hono<DashboardAppEnv>()
  .post("/password", requireSession, csrfWithSession, async (c) => {
    const body = await parseBody(c, change);
    const session = c.get("session");
    await throttleAttempt(c, `password-change:${session.userId}`, CHANGES_PER_USER);
    const user = await c.env.DB.prepare("SELECT password_hash, password_salt, password_iterations, session_epoch FROM users WHERE id = ?")
      .bind(session.userId)
      .first<{ password_hash: string; password_salt: string; password_iterations: number; session_epoch: number }>();
    if (!user) throw notSignedIn();
    const stored = { hash: user.password_hash, salt: user.password_salt, iterations: user.password_iterations };
    if (!(await verifyPassword(body.current_password, stored))) throw wrongCurrentPassword();
    await c.env.DB.batch(replacePassword(c.env.DB, session.userId, await hashPassword(body.new_password), Date.now()));
    const csrfToken = await startSession(c, session.userId, user.session_epoch + 1);
    return c.json({ changed: true, csrf_token: csrfToken });
  })

  .post("/password-reset", csrfBeforeSignIn, async (c) => {
    const body = await parseBody(c, reset);
    await throttleAttempt(c, `address:${c.req.header("cf-connecting-ip") ?? "local"}`, RESETS_PER_ADDRESS);
    const now = Date.now();
    const spent = await c.env.DB.prepare(
      "UPDATE password_resets SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING user_id",
    )
      .bind(now, await sha256Hex(body.token), now)
      .first<{ user_id: string }>();
    if (!spent) throw invalidResetToken();
    await c.env.DB.batch(replacePassword(c.env.DB, spent.user_id, await hashPassword(body.new_password), now));
    return c.json({ reset: true });
  });

// Counts one attempt of a dashboard action (sign-in, sign-up, password change or reset) against
// its limit in the SignInThrottle Durable Object (limits/sign-in-throttle.ts), before any password
// is checked; past the limit the action is refused with 429.
import type { DashboardAppEnv } from "./env";
import { tooManyAttempts } from "./errors";

export async function throttleAttempt(c: { env: DashboardAppEnv["Bindings"] }, name: string, limit: number): Promise<void> {
  const ns = c.env.SIGNIN_THROTTLE;
  if (!ns) return;
  const verdict = await ns.get(ns.idFromName(name)).attempt(limit);
  if (!verdict.allowed) throw tooManyAttempts(verdict.retryAfterSeconds);
}

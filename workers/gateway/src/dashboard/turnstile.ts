// Cloudflare Turnstile on sign-up: a bot check verified server-side (siteverify), so free
// sign-up credit cannot be farmed by scripts. On when TURNSTILE_SECRET_KEY is set; locally
// (ENVIRONMENT=development, no secret) off; elsewhere without a secret, sign-up is closed
// rather than unguarded. TURNSTILE_VERIFY_URL points tests at a stand-in verifier.
import type { Context } from "hono";
import { isDevelopment } from "../env";
import { ApiError } from "../errors/api-error";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";

const SITEVERIFY_URL = "https://challenges.cloudflare.com/turnstile/v0/siteverify";
const VERIFY_TIMEOUT_MS = 10_000;

export async function requireHuman(c: Context<DashboardAppEnv>, token: string | undefined): Promise<void> {
  const secret = c.env.TURNSTILE_SECRET_KEY;
  if (!secret) {
    if (isDevelopment(c.env)) return;
    throw new ApiError(503, "Sign-up is not available: the bot check (TURNSTILE_SECRET_KEY) is not configured", null, {}, "signup_unavailable");
  }
  if (!token) throw invalidInput("Complete the human check before creating an account", "turnstile_token");
  const form = new URLSearchParams({ secret, response: token });
  const ip = c.req.header("cf-connecting-ip");
  if (ip) form.set("remoteip", ip);
  let outcome: { success?: boolean };
  try {
    const res = await fetch(c.env.TURNSTILE_VERIFY_URL || SITEVERIFY_URL, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: form.toString(),
      signal: AbortSignal.timeout(VERIFY_TIMEOUT_MS),
    });
    outcome = await res.json();
  } catch {
    throw new ApiError(503, "The human check could not be verified just now; try again", null, {}, "turnstile_unavailable");
  }
  if (outcome.success !== true) throw new ApiError(403, "The human check failed; reload the page and try again", "turnstile_token", {}, "turnstile_failed");
}

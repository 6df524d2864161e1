// Bindings and per-request variables of the dashboard API. The dashboard's own bindings are
// declared here so the gateway's Env stays about the API-key surface.
import type { Env, Variables } from "../env";

export interface DashboardEnv extends Env {
  // Starting credit for new sign-ups, integer micro-USD ("0" or unset in production).
  SIGNUP_GRANT_MICROS?: string;
  // Cloudflare Turnstile on sign-up (turnstile.ts): the widget's public site key, the secret
  // siteverify checks tokens with, and (tests only) another verify endpoint.
  TURNSTILE_SITE_KEY?: string;
  TURNSTILE_SECRET_KEY?: string;
  TURNSTILE_VERIFY_URL?: string;
}

export interface DashboardSession {
  sessionHash: string;
  userId: string;
  email: string;
  role: "user" | "admin";
  accountId: string;
  csrfToken: string;
}

export type DashboardAppEnv = {
  Bindings: DashboardEnv;
  Variables: Variables & { session: DashboardSession };
};

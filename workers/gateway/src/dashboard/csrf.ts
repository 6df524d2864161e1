// CSRF protection for every state change. Two independent checks:
// - the browser's own provenance headers (Origin / Sec-Fetch-Site) must not say cross-site;
// - a signed-in request must echo the session's CSRF token in `x-csrf-token`, which a page on
//   another origin cannot read. Before sign-in (sign-up, sign-in) the body must be JSON,
//   which a cross-site form cannot send without a CORS preflight we never grant.
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import type { DashboardAppEnv } from "./env";
import { csrfRejected } from "./errors";
import { timingSafeEqual } from "./passwords";

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

function crossSite(c: Context<DashboardAppEnv>): boolean {
  const fetchSite = c.req.header("sec-fetch-site");
  if (fetchSite && fetchSite !== "same-origin" && fetchSite !== "none") return true;
  const origin = c.req.header("origin");
  if (origin && origin !== new URL(c.req.url).origin) return true;
  return false;
}

export const csrfBeforeSignIn = createMiddleware<DashboardAppEnv>(async (c, next) => {
  if (SAFE_METHODS.has(c.req.method)) return next();
  const isJson = (c.req.header("content-type") ?? "").toLowerCase().startsWith("application/json");
  if (crossSite(c) || !isJson) throw csrfRejected();
  await next();
});

// Runs after requireSession.
export const csrfWithSession = createMiddleware<DashboardAppEnv>(async (c, next) => {
  if (SAFE_METHODS.has(c.req.method)) return next();
  const presented = c.req.header("x-csrf-token") ?? "";
  if (crossSite(c) || !timingSafeEqual(presented, c.get("session").csrfToken)) throw csrfRejected();
  await next();
});

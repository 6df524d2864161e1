// The dashboard single-page app, served from the static assets binding. Paths without a
// file of their own get index.html, so deep links such as /dashboard/usage load the app.
import type { Context } from "hono";
import { ApiError } from "../errors/api-error";
import type { DashboardAppEnv } from "./env";

// Turnstile's widget (sign-up) is a script and an iframe from challenges.cloudflare.com.
const TURNSTILE = "https://challenges.cloudflare.com";
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy":
    `default-src 'self'; script-src 'self' ${TURNSTILE}; frame-src ${TURNSTILE}; style-src 'self'; img-src 'self' data:; connect-src 'self'; ` +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
};

function withSecurityHeaders(res: Response): Response {
  const out = new Response(res.body, res);
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) out.headers.set(name, value);
  return out;
}

export async function serveDashboard(c: Context<DashboardAppEnv>): Promise<Response> {
  const assets = c.env.ASSETS;
  if (!assets) throw new ApiError(404, "The dashboard is not built (run npm start or npm test once)");
  const url = new URL(c.req.url);
  const res = await assets.fetch(new Request(url, { method: c.req.method, headers: c.req.raw.headers }));
  if (res.status !== 404 || /\.[a-z0-9]+$/i.test(url.pathname)) return withSecurityHeaders(res);
  const index = await assets.fetch(new Request(new URL("/dashboard/", url), { headers: c.req.raw.headers }));
  if (index.status === 404) throw new ApiError(404, "The dashboard is not built (run npm start or npm test once)");
  return withSecurityHeaders(index);
}

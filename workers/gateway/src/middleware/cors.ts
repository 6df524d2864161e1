// CORS for the API paths (not the dashboard, which is same-origin and cookie-based): browser
// clients from the origins in CORS_ORIGINS (comma-separated, "*" for any) may call the API
// with their key. A preflight allows the headers the browser asks for (authorization,
// content-type, the SDKs' own); no cookies are involved, so no credentials mode.
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../env";

const EXPOSED = [
  "x-ds-trace-id",
  "retry-after",
  ...["requests", "tokens"].flatMap((d) => [`x-ratelimit-limit-${d}`, `x-ratelimit-remaining-${d}`, `x-ratelimit-reset-${d}`]),
];

const byConfig = new Map<string, MiddlewareHandler>();

function corsFor(config: string): MiddlewareHandler {
  let handler = byConfig.get(config);
  if (!handler) {
    const origins = config.split(",").map((o) => o.trim()).filter(Boolean);
    const any = origins.includes("*");
    handler = cors({
      origin: any ? "*" : (origin) => (origins.includes(origin) ? origin : null),
      allowMethods: ["GET", "POST", "OPTIONS"],
      exposeHeaders: EXPOSED,
      maxAge: 86_400,
    });
    byConfig.set(config, handler);
  }
  return handler;
}

export const apiCors: MiddlewareHandler<AppEnv> = async (c, next) => {
  // Server-side clients send no Origin: nothing to do on the hot path.
  if (!c.req.header("origin") || c.req.path.startsWith("/dashboard")) return next();
  return corsFor(c.env.CORS_ORIGINS ?? "")(c, next);
};

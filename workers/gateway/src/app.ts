// The gateway's HTTP surface. Every API path also lives under /v1 (and chat under /beta);
// the request pipeline of each endpoint is spelled out in its route file.
import { Hono } from "hono";
import { dashboardApp } from "./dashboard";
import type { AppEnv } from "./env";
import { notFound, onError } from "./errors/error-handler";
import { apiCors } from "./middleware/cors";
import { traceId } from "./middleware/trace-id";
import { anthropicRoute } from "./routes/anthropic";
import { balanceRoute } from "./routes/balance";
import { chatRoute } from "./routes/chat";
import { completionsRoute } from "./routes/completions";
import { modelsRoute } from "./routes/models";

export function buildApiRoutes(): Hono<AppEnv> {
  const api = new Hono<AppEnv>();
  api.route("/models", modelsRoute);
  api.route("/user/balance", balanceRoute);
  api.route("/chat/completions", chatRoute({ beta: false }));
  return api;
}

export function buildApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", traceId);
  app.use("*", apiCors);
  app.onError(onError);
  app.notFound(notFound);
  app.get("/", (c) => c.redirect("/dashboard/"));
  app.route("/dashboard", dashboardApp); // the dashboard SPA and its API under /dashboard/api

  const api = buildApiRoutes();
  for (const base of ["/", "/v1"]) app.route(base, api);
  app.route("/beta/chat/completions", chatRoute({ beta: true }));
  app.route("/beta/completions", completionsRoute);
  app.route("/anthropic", anthropicRoute);
  return app;
}

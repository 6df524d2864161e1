// The platform dashboard: its API under /dashboard/api (session cookies, CSRF tokens; apart
// from the API-key surface) and the single-page app under /dashboard.
import { Hono } from "hono";
import { adminAccountRoutes } from "./admin-accounts";
import { adminModelRoutes } from "./admin-models";
import { adminSettlementRoutes } from "./admin-settlements";
import { adminWorkerRoutes } from "./admin-workers";
import { serveDashboard } from "./assets";
import { auditAdminChanges, auditRoutes } from "./audit-log";
import { authRoutes } from "./auth-routes";
import { balanceRoutes } from "./balance";
import { csrfWithSession } from "./csrf";
import type { DashboardAppEnv } from "./env";
import { forbidden, notFoundHere } from "./errors";
import { exportRoutes } from "./export";
import { keyRoutes } from "./keys";
import { passwordRoutes } from "./password-routes";
import { modelRoutes } from "./models";
import { requireSession } from "./sessions";
import { usageRoutes } from "./usage";
import { webhookRoutes } from "./webhook";

const signedIn = (routes: Hono<DashboardAppEnv>) => new Hono<DashboardAppEnv>().use(requireSession, csrfWithSession).route("/", routes);

const adminOnly = new Hono<DashboardAppEnv>()
  .use(requireSession, csrfWithSession, async (c, next) => {
    if (c.get("session").role !== "admin") throw forbidden("Operators only");
    await next();
  })
  .use(auditAdminChanges)
  .route("/", auditRoutes)
  .route("/", adminAccountRoutes)
  .route("/", adminWorkerRoutes)
  .route("/", adminModelRoutes)
  .route("/", adminSettlementRoutes);

export const dashboardApi = new Hono<DashboardAppEnv>()
  .use(async (c, next) => {
    await next();
    c.header("cache-control", "no-store");
  })
  .route("/auth", authRoutes)
  .route("/auth", passwordRoutes)
  .route("/webhooks", webhookRoutes)
  .route("/keys", signedIn(keyRoutes))
  .route("/balance", signedIn(balanceRoutes))
  .route("/models", signedIn(modelRoutes))
  .route("/usage/export", signedIn(exportRoutes))
  .route("/usage", signedIn(usageRoutes))
  .route("/admin", adminOnly)
  .all("*", (c) => {
    throw notFoundHere(`${c.req.method} ${new URL(c.req.url).pathname}`);
  });

export const dashboardApp = new Hono<DashboardAppEnv>().route("/api", dashboardApi).get("*", serveDashboard);

// Every response carries `x-ds-trace-id`; it is also the request id the worker and the ledger see.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";

export const traceId = createMiddleware<AppEnv>(async (c, next) => {
  const id = crypto.randomUUID();
  c.set("traceId", id);
  c.set("timings", {});
  await next();
  c.res.headers.set("x-ds-trace-id", id);
  const timings = Object.entries(c.get("timings"));
  if (timings.length > 0) c.res.headers.set("server-timing", timings.map(([name, ms]) => `${name};dur=${ms.toFixed(1)}`).join(", "));
});

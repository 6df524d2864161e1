// Every response carries `x-ds-trace-id`; it is also the request id the worker and the ledger see.
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../env";

export const traceId = createMiddleware<AppEnv>(async (c, next) => {
  const id = crypto.randomUUID();
  c.set("traceId", id);
  await next();
  c.res.headers.set("x-ds-trace-id", id);
});

// Turns anything thrown in the pipeline into the contract's error envelope. Unknown errors
// become a 500 whose message never leaks internals (and never a key: keys are not logged).
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { AppEnv } from "../env";
import { ApiError } from "./api-error";

export function errorResponse(error: ApiError, traceId?: string): Response {
  const headers = new Headers({ "content-type": "application/json", ...error.headers });
  if (traceId) headers.set("x-ds-trace-id", traceId);
  return new Response(JSON.stringify(error.toJSON()), { status: error.status, headers });
}

export function onError(err: Error, c: Context<AppEnv>): Response {
  const traceId = c.get("traceId");
  if (err instanceof ApiError) return errorResponse(err, traceId);
  if (err instanceof HTTPException) return errorResponse(new ApiError(err.status as 400, err.message || "Bad Request"), traceId);
  console.error(`trace ${traceId}: unhandled error`, err?.stack ?? err);
  return errorResponse(new ApiError(500, "Internal Server Error, please retry later"), traceId);
}

export function notFound(c: Context<AppEnv>): Response {
  return errorResponse(new ApiError(404, `Not Found: ${c.req.method} ${new URL(c.req.url).pathname}`), c.get("traceId"));
}

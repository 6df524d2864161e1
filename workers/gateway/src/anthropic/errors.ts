// The Anthropic error shape: {"type": "error", "error": {"type", "message"}}. Statuses stay
// those of the shared pipeline (with their headers, such as Retry-After); only the body's
// vocabulary changes, so the Anthropic SDKs raise their matching error classes.
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { AppEnv } from "../env";
import { ApiError, badRequest } from "../errors/api-error";

const TYPE_BY_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "billing_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  422: "invalid_request_error",
  429: "rate_limit_error",
  500: "api_error",
  503: "overloaded_error",
  529: "overloaded_error",
};

export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

export function anthropicErrorType(status: number): string {
  return TYPE_BY_STATUS[status] ?? (status >= 500 ? "api_error" : "invalid_request_error");
}

export function anthropicErrorBody(error: ApiError): AnthropicErrorBody {
  return { type: "error", error: { type: anthropicErrorType(error.status), message: error.message } };
}

/**
 * The chat path's context check, worded as Anthropic words it: Claude Code reads these two
 * messages, retrying with a smaller max_tokens after the first and compacting after the second.
 */
export function contextLimitExceeded(promptTokens: number, maxTokens: number, contextLength: number, atLeast = false): ApiError {
  const bound = atLeast ? "at least " : "";
  if (promptTokens >= contextLength) return badRequest(`prompt is too long: ${bound}${promptTokens} tokens > ${contextLength} maximum`, "messages");
  return badRequest(
    `input length and \`max_tokens\` exceed context limit: ${bound}${promptTokens} + ${maxTokens} > ${contextLength}, decrease input length or \`max_tokens\` and try again`,
    "max_tokens",
  );
}

/** A failure after the response had started: the worker stopped before the message was complete. */
export const INCOMPLETE_RESPONSE: AnthropicErrorBody = {
  type: "error",
  error: { type: "overloaded_error", message: "The inference system failed before the response was complete; please retry" },
};

export function anthropicErrorResponse(error: ApiError, traceId?: string): Response {
  const headers = new Headers({ "content-type": "application/json", ...error.headers });
  if (traceId) headers.set("x-ds-trace-id", traceId);
  return new Response(JSON.stringify(anthropicErrorBody(error)), { status: error.status, headers });
}

/** The Anthropic routes' error handler: the shared pipeline's errors (auth, validation, limits, money) in Anthropic's body. */
export function anthropicOnError(err: Error, c: Context<AppEnv>): Response {
  const traceId = c.get("traceId");
  if (err instanceof ApiError) return anthropicErrorResponse(err, traceId);
  if (err instanceof HTTPException) return anthropicErrorResponse(new ApiError(err.status as 400, err.message || "Bad Request"), traceId);
  console.error(`trace ${traceId}: unhandled error`, err?.stack ?? err);
  return anthropicErrorResponse(new ApiError(500, "Internal Server Error, please retry later"), traceId);
}

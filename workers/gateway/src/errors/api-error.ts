// The error envelope of the API contract: {"error": {"message", "type", "param", "code"}}.
// Every failure the gateway reports goes through ApiError so the shape never drifts.
import type { ContentfulStatusCode } from "hono/utils/http-status";

const TYPE_BY_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "insufficient_balance_error",
  404: "not_found_error",
  413: "invalid_request_error",
  422: "invalid_request_error",
  429: "rate_limit_error",
  500: "api_error",
  503: "server_overloaded_error",
};

const CODE_BY_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "invalid_api_key",
  402: "insufficient_balance",
  404: "not_found",
  413: "request_too_large",
  422: "invalid_parameter",
  429: "rate_limit_exceeded",
  500: "internal_error",
  503: "server_overloaded",
};

export interface ErrorEnvelope {
  error: { message: string; type: string; param: string | null; code: string };
}

export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
    readonly code: string = CODE_BY_STATUS[status] ?? "error",
  ) {
    super(message);
  }

  get type(): string {
    return TYPE_BY_STATUS[this.status] ?? "api_error";
  }

  toJSON(): ErrorEnvelope {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null) => new ApiError(400, message, param);
export const invalidParameter = (message: string, param: string | null = null) => new ApiError(422, message, param);
export const insufficientBalance = () => new ApiError(402, "Insufficient Balance");
export const serverOverloaded = () => new ApiError(503, "Server Overloaded");
export const rateLimited = (retryAfterSeconds: number, headers: Record<string, string> = {}) =>
  new ApiError(429, "Rate Limit Reached", null, { "retry-after": String(retryAfterSeconds), ...headers });

export function authenticationFails(presentedKey: string | null): ApiError {
  // The contract's message shows only the last four characters of what was sent.
  const tail = presentedKey ? presentedKey.slice(-4) : "";
  return new ApiError(401, `Authentication Fails, Your api key: ****${tail} is invalid`);
}

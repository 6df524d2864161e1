// Dashboard failures use the gateway's error envelope, with codes a browser can act on.
import { ApiError } from "../errors/api-error";

export const notSignedIn = () => new ApiError(401, "Not signed in", null, {}, "not_signed_in");
export const badCredentials = () => new ApiError(401, "Wrong email or password", null, {}, "bad_credentials");
export const forbidden = (message = "Forbidden") => new ApiError(403, message, null, {}, "forbidden");
export const csrfRejected = () => new ApiError(403, "CSRF check failed: reload the page and try again", null, {}, "csrf_failed");
export const notFoundHere = (what: string) => new ApiError(404, `${what} not found`, null, {}, "not_found");
export const conflict = (message: string) => new ApiError(409, message, null, {}, "conflict");
export const tooManyAttempts = (retryAfterSeconds: number) =>
  new ApiError(429, "Too many sign-in attempts; try again later", null, { "retry-after": String(retryAfterSeconds) }, "rate_limit_exceeded");
export const wrongCurrentPassword = () => new ApiError(400, "current_password: not your current password", "current_password", {}, "bad_credentials");
export const invalidResetToken = () => new ApiError(400, "This password reset link is invalid, used or expired; ask for a new one", "token", {}, "invalid_reset_token");
export const invalidInput = (message: string, param: string | null = null) => new ApiError(400, message, param, {}, "invalid_request_error");

// What a bad key may cost. A well-formed key that D1 does not know is remembered as unknown for
// UNKNOWN_KEY_TTL_MS, so repeating it reads nothing. Each client address (CF-Connecting-IP) has
// a budget of failed authentications, counted across isolates by a Durable Object (the attempt
// throttle the dashboard's sign-in uses, limits/sign-in-throttle.ts, under its own name); past it, keys this isolate does not
// already know are refused with a 429 before any lookup until the window has room again.
// A key is 128 random bits, so a key created after it was remembered as unknown cannot be one
// anybody presented before.
import type { Context } from "hono";
import type { AppEnv } from "../env";
import { ApiError, authenticationFails } from "../errors/api-error";

export const UNKNOWN_KEY_TTL_MS = 30_000;
export const FAILED_AUTH_BUDGET = 30;
export const FAILED_AUTH_WINDOW_MS = 5 * 60_000;
// Bounds the isolate's memory; clearing only costs lookups again.
const REMEMBERED_MAX = 10_000;

const unknownUntil = new Map<string, number>(); // key hash -> expiry
const blockedUntil = new Map<string, number>(); // client address -> expiry

function remember(map: Map<string, number>, name: string, until: number): void {
  if (!map.has(name) && map.size >= REMEMBERED_MAX) map.clear();
  map.set(name, until);
}

function stillSet(map: Map<string, number>, name: string, now: number): boolean {
  const until = map.get(name);
  if (until === undefined) return false;
  if (until > now) return true;
  map.delete(name);
  return false;
}

function clientAddress(c: Context<AppEnv>): string | null {
  return c.req.header("cf-connecting-ip") ?? null;
}

function budgetSpent(retryAfterSeconds: number): ApiError {
  return new ApiError(429, "Rate Limit Reached: too many failed authentication attempts", null, { "retry-after": String(retryAfterSeconds) });
}

export function isKnownUnknown(keyHash: string, now = Date.now()): boolean {
  return stillSet(unknownUntil, keyHash, now);
}

export function rememberUnknown(keyHash: string, now = Date.now()): void {
  remember(unknownUntil, keyHash, now + UNKNOWN_KEY_TTL_MS);
}

// Before a key this isolate does not know is looked up: refuses an address whose budget is spent.
export function refuseSpentAddress(c: Context<AppEnv>): void {
  const address = clientAddress(c);
  const now = Date.now();
  if (address && stillSet(blockedUntil, address, now)) {
    throw budgetSpent(Math.max(1, Math.ceil((blockedUntil.get(address)! - now) / 1000)));
  }
}

// A well-formed key failed: counts against its address and answers 401, or 429 once the budget
// is spent. Requests without a client address (local tools) have no budget.
export async function failedAuthentication(c: Context<AppEnv>, key: string): Promise<ApiError> {
  const address = clientAddress(c);
  const counter = c.env.SIGNIN_THROTTLE;
  if (!address || !counter) return authenticationFails(key);
  const verdict = await counter.get(counter.idFromName(`api-auth:${address}`)).attempt(FAILED_AUTH_BUDGET, FAILED_AUTH_WINDOW_MS);
  if (verdict.allowed) return authenticationFails(key);
  remember(blockedUntil, address, Date.now() + verdict.retryAfterSeconds * 1000);
  return budgetSpent(verdict.retryAfterSeconds);
}

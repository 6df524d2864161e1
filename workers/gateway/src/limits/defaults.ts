// Platform default rate limits: what an account gets when its own limit column is null.
// Generous on purpose; tiers and abuse controls are set per account or key by operators.
export const PLATFORM_DEFAULT_LIMITS = {
  rpm: 600,
  tpm: 10_000_000,
  concurrency: 100,
} as const;

// A concurrency slot whose request never finished (a crashed gateway) frees itself after this.
export const LEASE_TTL_MS = 15 * 60_000;

export interface Limits {
  rpm: number | null;
  tpm: number | null;
  concurrency: number | null;
}

// Account limits: null means the platform default.
export function accountLimits(limits: Limits): Limits {
  return {
    rpm: limits.rpm ?? PLATFORM_DEFAULT_LIMITS.rpm,
    tpm: limits.tpm ?? PLATFORM_DEFAULT_LIMITS.tpm,
    concurrency: limits.concurrency ?? PLATFORM_DEFAULT_LIMITS.concurrency,
  };
}

// Key limits narrow the account's: null means no extra limit on that dimension.
export function keyLimits(limits: Limits): Limits | null {
  return limits.rpm === null && limits.tpm === null && limits.concurrency === null ? null : limits;
}

// One-time password-reset tokens. The operator CLI issues one (`npm run admin -- reset-password`)
// and prints its link, since no mail service is configured; D1 keeps only the token's SHA-256.
// A token expires after RESET_TOKEN_TTL_MS and is spent by its first use; issuing a new one, or
// any password change, spends the older ones.
import { randomHex, sha256Hex } from "../auth/api-keys";

export const RESET_TOKEN_TTL_MS = 60 * 60_000;
export const RESET_TOKEN_PATTERN = /^[0-9a-f]{64}$/;

export async function newResetToken(): Promise<{ token: string; tokenHash: string }> {
  const token = randomHex(32);
  return { token, tokenHash: await sha256Hex(token) };
}

export function resetLink(baseUrl: string, token: string): string {
  return `${baseUrl.replace(/\/+$/, "")}/dashboard/reset-password?token=${token}`;
}

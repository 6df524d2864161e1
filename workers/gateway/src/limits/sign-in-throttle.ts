// Attempt throttle: one Durable Object per name, counting attempts in a sliding window. The
// dashboard counts sign-ins per email and per client address (every attempt before the password
// is checked, so parallel guesses cannot slip past; a successful sign-in clears the email's
// count); the API counts failed authentications per client address (auth/failed-auth.ts).
import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";

export const SIGN_IN_WINDOW_MS = 15 * 60_000;

export interface ThrottleVerdict {
  allowed: boolean;
  retryAfterSeconds: number;
}

export class SignInThrottle extends DurableObject<Env> {
  async attempt(limit: number, windowMs = SIGN_IN_WINDOW_MS): Promise<ThrottleVerdict> {
    const now = Date.now();
    const recent = ((await this.ctx.storage.get<number[]>("attempts")) ?? []).filter((t) => now - t < windowMs);
    if (recent.length >= limit) {
      const oldest = recent[0] ?? now;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((oldest + windowMs - now) / 1000)) };
    }
    recent.push(now);
    await this.ctx.storage.put("attempts", recent);
    return { allowed: true, retryAfterSeconds: 0 };
  }

  async clear(): Promise<void> {
    await this.ctx.storage.delete("attempts");
  }
}

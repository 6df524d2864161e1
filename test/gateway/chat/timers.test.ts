// The pipeline's retry of idempotent calls (settlement): retried until it succeeds, at most
// RETRY_ATTEMPTS times, and the last failure is what the caller sees.
import { describe, expect, it } from "vitest";
import { RETRY_ATTEMPTS, withRetries } from "../../../workers/gateway/src/inference/timers";

describe("withRetries", () => {
  it("retries a failing call until it succeeds", async () => {
    let calls = 0;
    const result = await withRetries(async () => {
      calls++;
      if (calls < 3) throw new Error(`attempt ${calls} failed`);
      return "settled";
    }, 1);
    expect(result).toBe("settled");
    expect(calls).toBe(3);
  });

  it("gives up after RETRY_ATTEMPTS with the last error", async () => {
    let calls = 0;
    await expect(
      withRetries(async () => {
        calls++;
        throw new Error(`attempt ${calls} failed`);
      }, 1),
    ).rejects.toThrow(`attempt ${RETRY_ATTEMPTS} failed`);
    expect(calls).toBe(RETRY_ATTEMPTS);
  });
});

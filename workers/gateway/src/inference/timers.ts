// Small timing helpers of the inference pipeline.

// Runs `attempt` until it succeeds, at most RETRY_ATTEMPTS times, waiting 4x longer each time.
export const RETRY_ATTEMPTS = 4;
export async function withRetries<T>(attempt: () => Promise<T>, baseDelayMs = 100): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (i >= RETRY_ATTEMPTS) throw err;
      await timer(baseDelayMs * 4 ** (i - 1)).done;
    }
  }
}

// A timer that can be cancelled once it no longer matters.
export function timer(ms: number): { done: Promise<void>; cancel(): void } {
  let handle: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => (handle = setTimeout(resolve, ms)));
  return { done, cancel: () => clearTimeout(handle) };
}

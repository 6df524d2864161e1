// Shared setup for the chat-path tests: an account with balance, the fake worker registered,
// and the official OpenAI SDK pointed at the gateway inside workerd.
import { SELF } from "cloudflare:test";
import OpenAI from "openai";
import { inject } from "vitest";
import { invalidateWorkerRegistry } from "../../../workers/gateway/src/upstream/worker-registry";
import { readyAccount, registerWorker } from "../setup/fixtures";

export const BASE = "https://gw.test";

export async function setupFakeWorker(id = "fake-1"): Promise<void> {
  const { url, secret } = inject("fakeUpstream");
  await registerWorker(id, url, secret);
  invalidateWorkerRegistry();
}

export function openaiClient(key: string, baseURL = `${BASE}/v1`): OpenAI {
  return new OpenAI({ apiKey: key, baseURL, fetch: (input, init) => SELF.fetch(input as string, init as RequestInit), maxRetries: 0 });
}

export async function readyClient(balanceMicros?: number) {
  await setupFakeWorker();
  const ready = await readyAccount(balanceMicros);
  return { ...ready, client: openaiClient(ready.key) };
}

export const post = (path: string, key: string, body: unknown) =>
  SELF.fetch(`${BASE}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

export async function fakeRequests(): Promise<any[]> {
  const { url } = inject("fakeUpstream");
  return (await fetch(`${url}/__requests`)).json();
}

// Reads an SSE response into its data payloads (and counts keep-alive comments).
export async function readSse(res: Response): Promise<{ events: any[]; done: boolean; keepAlives: number; raw: string }> {
  const raw = await res.text();
  const events: any[] = [];
  let done = false;
  for (const block of raw.split("\n\n")) {
    const line = block.trim();
    if (line.startsWith("data: ")) {
      const data = line.slice(6);
      if (data === "[DONE]") done = true;
      else events.push(JSON.parse(data));
    }
  }
  return { events, done, keepAlives: (raw.match(/^: keep-alive$/gm) ?? []).length, raw };
}

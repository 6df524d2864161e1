// The official Anthropic SDK pointed at the gateway's /anthropic base URL inside workerd.
import { env, SELF } from "cloudflare:test";
import Anthropic from "@anthropic-ai/sdk";
import { readyAccount } from "../setup/fixtures";
import { BASE, setupFakeWorker } from "../chat/helpers";

export function anthropicClient(key: string, auth: "x-api-key" | "bearer" = "x-api-key"): Anthropic {
  return new Anthropic({
    ...(auth === "x-api-key" ? { apiKey: key } : { apiKey: null, authToken: key }),
    baseURL: `${BASE}/anthropic`,
    fetch: (input, init) => SELF.fetch(input as string, init as RequestInit),
    maxRetries: 0,
  });
}

export async function readyAnthropic(balanceMicros?: number) {
  await setupFakeWorker();
  const ready = await readyAccount(balanceMicros);
  return { ...ready, client: anthropicClient(ready.key) };
}

export const postMessages = (key: string, body: unknown) =>
  SELF.fetch(`${BASE}/anthropic/v1/messages`, {
    method: "POST",
    headers: { "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
    body: JSON.stringify(body),
  });

// `event: <type>\ndata: <json>` frames of an Anthropic stream, in order.
export function parseAnthropicSse(raw: string): { event: string; data: any }[] {
  return raw
    .split("\n\n")
    .filter((frame) => frame.includes("event: "))
    .map((frame) => ({ event: /^event: (.*)$/m.exec(frame)![1]!, data: JSON.parse(/^data: (.*)$/m.exec(frame)![1]!) }));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Settlement runs after the response; its usage row reaches D1 shortly after.
export async function usageRow(requestId: string): Promise<any> {
  for (let i = 0; i < 100; i++) {
    const row = await env.DB.prepare("SELECT * FROM usage_records WHERE request_id = ?").bind(requestId).first();
    if (row) return row;
    await sleep(50);
  }
  throw new Error(`no usage row for ${requestId}`);
}

export const nonce = () => crypto.randomUUID().slice(0, 8);

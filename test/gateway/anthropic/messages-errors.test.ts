// Failures on /anthropic in Anthropic's shape: refusals before forwarding keep their status,
// failures after the stream started become an `error` event.
import { env, SELF } from "cloudflare:test";
import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, it } from "vitest";
import { keysChanged } from "../../../workers/gateway/src/auth/keys-changed";
import { invalidateWorkerRegistry } from "../../../workers/gateway/src/upstream/worker-registry";
import { BASE, setupFakeWorker } from "../chat/helpers";
import { readyAccount, registerWorker } from "../setup/fixtures";
import { anthropicClient, parseAnthropicSse, postMessages, readyAnthropic, usageRow } from "./helpers";

const ask = (content: string, extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", max_tokens: 100, messages: [{ role: "user", content }], ...extra });

async function sdkError(promise: Promise<unknown>): Promise<InstanceType<typeof Anthropic.APIError>> {
  const err = await promise.then(
    () => null,
    (e) => e,
  );
  expect(err).toBeInstanceOf(Anthropic.APIError);
  return err;
}

describe("Anthropic errors before the response starts", () => {
  it("401 authentication_error for a bad key", async () => {
    const err = await sdkError(anthropicClient("sk-00000000000000000000000000000000").messages.create(ask("hi") as any));
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError);
    expect(err.error).toEqual({ type: "error", error: { type: "authentication_error", message: "Authentication Fails, Your api key: ****0000 is invalid" } });
  });

  it("400 invalid_request_error for image blocks, malformed bodies and unknown paths in Anthropic's shape", async () => {
    const { client, key } = await readyAnthropic();
    const image = { type: "image" as const, source: { type: "base64" as const, media_type: "image/png" as const, data: "iVBORw0KGgo=" } };
    const err = await sdkError(client.messages.create({ model: "deepseek-chat", max_tokens: 10, messages: [{ role: "user", content: [image] }] }));
    expect(err).toBeInstanceOf(Anthropic.BadRequestError);
    expect(err.error).toEqual({ type: "error", error: { type: "invalid_request_error", message: "messages.0.content.0: image content blocks are not supported" } });

    const malformed = await postMessages(key, { model: "deepseek-chat", messages: [] });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });

    const notJson = await SELF.fetch(`${BASE}/anthropic/v1/messages`, { method: "POST", headers: { "x-api-key": key }, body: "{" });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });

    const unknown = await SELF.fetch(`${BASE}/anthropic/v1/complete`, { method: "POST", headers: { "x-api-key": key }, body: "{}" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ type: "error", error: { type: "not_found_error" } });
  });

  it("chat-path refusals (tools on the reasoner, context length) come back in Anthropic's shape", async () => {
    const { key } = await readyAnthropic();
    const tools = [{ name: "t", input_schema: { type: "object" } }];
    const res = await postMessages(key, ask("hi", { model: "deepseek-reasoner", tools }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: "Function calling (tools) is not supported by this model (deepseek-reasoner)" },
    });
  });

  it("the context check (prompt + max_tokens) answers with Anthropic's wording, which Claude Code acts on", async () => {
    const { key } = await readyAnthropic();
    // Claude Code asks for max_tokens 32000: clamped to the model's 8192, then checked.
    const nearlyFull = await postMessages(key, { ...ask("word ".repeat(60_000)), max_tokens: 32_000 });
    expect(nearlyFull.status).toBe(400);
    const { error } = await nearlyFull.json<any>();
    expect(error.type).toBe("invalid_request_error");
    const [, input, max, limit] = /^input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+), decrease input length or `max_tokens` and try again$/.exec(error.message)!.map(Number);
    expect([max, limit]).toEqual([8192, 65536]);
    expect(input! + max!).toBeGreaterThan(limit!);
    expect(input).toBeLessThan(limit!);

    const tooLong = await postMessages(key, ask("word ".repeat(70_000)));
    expect(tooLong.status).toBe(400);
    expect((await tooLong.json<any>()).error.message).toMatch(/^prompt is too long: at least \d+ tokens > 65536 maximum$/);
  });

  it("402 billing_error without balance", async () => {
    await setupFakeWorker();
    const { key } = await readyAccount(0);
    const res = await postMessages(key, ask("hi"));
    expect(res.status).toBe(402);
    expect(await res.json()).toEqual({ type: "error", error: { type: "billing_error", message: "Insufficient Balance" } });
  });

  it("429 rate_limit_error with Retry-After", async () => {
    const { account, key, keyId } = await readyAnthropic();
    await env.DB.prepare("UPDATE api_keys SET rpm_limit = 1 WHERE id = ?").bind(keyId).run();
    await keysChanged(env, account);
    expect((await postMessages(key, ask("[[words:1]]"))).status).toBe(200);
    const err = await sdkError(anthropicClient(key).messages.create(ask("[[words:1]]") as any));
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect(err.headers?.get("retry-after")).toMatch(/^\d+$/);
    expect(err.error).toEqual({ type: "error", error: { type: "rate_limit_error", message: "Rate Limit Reached" } });
  });

  it("503 overloaded_error when no worker is available", async () => {
    const { key } = await readyAccount();
    await env.DB.prepare("DELETE FROM gpu_workers").run();
    await registerWorker("dead", "http://127.0.0.1:9", "s");
    invalidateWorkerRegistry();
    try {
      const res = await postMessages(key, ask("hi"));
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({ type: "error", error: { type: "overloaded_error", message: "Server Overloaded" } });
    } finally {
      await env.DB.prepare("DELETE FROM gpu_workers").run();
      await setupFakeWorker();
    }
  });
});

describe("Anthropic streams while waiting and when the worker fails", () => {
  it("sends ping events while the request waits for the worker", async () => {
    const { key } = await readyAnthropic();
    const res = await postMessages(key, ask("[[delay_first_byte:1200]] [[words:2]]", { stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = parseAnthropicSse(await res.text());
    const firstStart = events.findIndex((e) => e.event === "message_start");
    expect(firstStart).toBeGreaterThan(0);
    expect(events.slice(0, firstStart).every((e) => e.event === "ping" && e.data.type === "ping")).toBe(true);
    expect(events.at(-1)!.event).toBe("message_stop");
  });

  it("a non-streaming request that waits still gets one message", async () => {
    const { client } = await readyAnthropic();
    const message = await client.messages.create(ask("[[delay_first_byte:1200]] [[words:2]]") as any);
    expect((message as any).content).toEqual([{ type: "text", text: "Hello from" }]);
  });

  it("a worker dying mid-stream becomes an error event; only delivered tokens are charged", async () => {
    const { key, client } = await readyAnthropic();
    const res = await postMessages(key, ask("[[words:6]] [[fail_after:3]]", { stream: true }));
    expect(res.status).toBe(200);
    const events = parseAnthropicSse(await res.text());
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "error",
    ]);
    expect(events.at(-1)!.data).toMatchObject({ type: "error", error: { type: "overloaded_error" } });
    const row = await usageRow(res.headers.get("x-ds-trace-id")!);
    expect(row).toMatchObject({ status: "failed", completion_tokens: 3, endpoint: "anthropic.messages" });

    // The SDK raises the error event as an APIError.
    const stream = client.messages.stream(ask("[[words:6]] [[fail_after:2]]") as any);
    const err = await sdkError(stream.finalMessage());
    expect((err.error as any).error.type).toBe("overloaded_error");
  });
});

// POST /anthropic/v1/messages/count_tokens: the prompt's tokens, the same count the context
// check uses (shown by a request that just overflows the context naming that count).
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BASE } from "../chat/helpers";
import { postMessages, readyAnthropic } from "../anthropic/helpers";
import { MAX_BODY_BYTES } from "../../../workers/gateway/src/middleware/json-body";

const countTokens = (key: string, body: unknown) =>
  SELF.fetch(`${BASE}/anthropic/v1/messages/count_tokens`, {
    method: "POST",
    headers: { "x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json" },
    body: JSON.stringify(body),
  });

describe("count_tokens", () => {
  it("answers {input_tokens} without max_tokens; system, tools and the template count", async () => {
    const { key } = await readyAnthropic();
    const base = { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "Hello there" }] };
    const plain = await countTokens(key, base);
    expect(plain.status).toBe(200);
    const { input_tokens: n } = await plain.json<{ input_tokens: number }>();
    expect(Number.isInteger(n) && n > 2).toBe(true);
    const withSystem = await (await countTokens(key, { ...base, system: "You are terse." })).json<any>();
    expect(withSystem.input_tokens).toBeGreaterThan(n);
    const tools = [{ name: "get_weather", description: "Weather of a city", input_schema: { type: "object", properties: { city: { type: "string" } } } }];
    const withTools = await (await countTokens(key, { ...base, tools })).json<any>();
    expect(withTools.input_tokens).toBeGreaterThan(n);
    // A whole Messages body, max_tokens included (even one past the model's limit), counts the same.
    const withMax = await countTokens(key, { ...base, max_tokens: 1_000_000 });
    expect(withMax.status).toBe(200);
    expect((await withMax.json<any>()).input_tokens).toBe(n);
  });

  it("is the count the context check uses", async () => {
    const { key } = await readyAnthropic();
    const words = Array.from({ length: 29_500 }, (_, i) => `w${i % 997}`).join(" ");
    const messages = [{ role: "user", content: words }];
    const { input_tokens: n } = await (await countTokens(key, { model: "deepseek-chat", messages })).json<any>();
    const maxTokens = 65_536 - n + 1; // one token too many
    expect(maxTokens).toBeGreaterThan(0);
    expect(maxTokens).toBeLessThanOrEqual(8192);
    const res = await postMessages(key, { model: "deepseek-chat", max_tokens: maxTokens, messages });
    expect(res.status).toBe(400);
    expect((await res.json<any>()).error.message).toContain(`${n} + ${maxTokens} > 65536`);
  });

  it("refuses a malformed body in Anthropic's error shape and needs a key", async () => {
    const { key } = await readyAnthropic();
    const bad = await countTokens(key, { model: "deepseek-chat" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect((await countTokens("sk-00000000000000000000000000000000", { model: "deepseek-chat", messages: [{ role: "user", content: "hi" }] })).status).toBe(401);
  });

  it("counts against the account's requests per minute, shared with messages; 429 in Anthropic's shape", async () => {
    const { account, key } = await readyAnthropic();
    await env.DB.prepare("UPDATE accounts SET rpm_limit = 2 WHERE id = ?").bind(account).run();
    const body = { model: "deepseek-chat", messages: [{ role: "user", content: "hi" }] };
    expect((await countTokens(key, body)).status).toBe(200);
    const ok = await countTokens(key, body);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-ratelimit-remaining-requests")).toBe("0");
    const refused = await countTokens(key, body);
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await refused.json()).toEqual({ type: "error", error: { type: "rate_limit_error", message: "Rate Limit Reached" } });
    expect((await postMessages(key, { ...body, max_tokens: 8 })).status).toBe(429);
  });

  it("refuses a body over the size limit with 413 in Anthropic's shape", async () => {
    const { key } = await readyAnthropic();
    const res = await countTokens(key, { model: "deepseek-chat", messages: [{ role: "user", content: "x".repeat(MAX_BODY_BYTES) }] });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ type: "error", error: { type: "request_too_large" } });
  });

  it("stops counting past the model's context: 400 `prompt is too long` with a lower bound", async () => {
    const { key } = await readyAnthropic();
    const words = Array.from({ length: 100_000 }, (_, i) => `w${i % 997}`).join(" "); // about 200,000 tokens
    const res = await countTokens(key, { model: "deepseek-chat", messages: [{ role: "user", content: words }] });
    expect(res.status).toBe(400);
    const { error } = await res.json<any>();
    expect(error.type).toBe("invalid_request_error");
    const counted = Number(/^prompt is too long: at least (\d+) tokens > 65536 maximum$/.exec(error.message)?.[1]);
    // Counting stopped just past the context, far below the prompt's full count.
    expect(counted).toBeGreaterThan(65_536);
    expect(counted).toBeLessThan(70_000);
  });
});

// POST /anthropic/v1/messages/count_tokens: the prompt's tokens, the same count the context
// check uses (shown by a request that just overflows the context naming that count).
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { BASE } from "../chat/helpers";
import { postMessages, readyAnthropic } from "../anthropic/helpers";

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
});

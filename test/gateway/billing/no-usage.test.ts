// No usage, no free lunch: an upstream that reports no usage, or stops reporting it, is billed on
// the gateway's own count: the prompt as the context check counted it, the completion by the
// tokenizer over exactly the text the client received. The usage row says so.
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { priceUsage } from "../../../workers/gateway/src/billing/pricing";
import { findModel } from "../../../workers/gateway/src/db/models";
import { countChatPromptTokens, loadTokenizer } from "../../../workers/gateway/src/tokenizer";
import { post, readSse } from "../chat/helpers";
import { eventually, gatewayEnv, payingAccount, total, usageRows } from "./ledger-helpers";

const BALANCE = 1_000_000;

const tokens = (text: string) => (text === "" ? 0 : loadTokenizer().countTokens(text));
const promptOf = (content: string, model = "deepseek-chat") => countChatPromptTokens([{ role: "user", content }], { model });

async function settledRow(accountId: string) {
  await eventually(async () => (await usageRows(accountId)).length === 1 && (await total(accountId)).reserved === 0, "the usage row");
  const [row] = await usageRows(accountId);
  return row!;
}

// The row is priced exactly on its counts, and that is what left the balance.
async function expectChargedFor(accountId: string, row: Record<string, any>, expected: { prompt: number; completion: number; reasoning?: number }) {
  expect(row).toMatchObject({
    usage_source: "gateway",
    cache_hit_tokens: 0,
    cache_miss_tokens: expected.prompt,
    completion_tokens: expected.completion,
    reasoning_tokens: expected.reasoning ?? 0,
  });
  const model = (await findModel(gatewayEnv.DB, row.model))!;
  const usage = { promptTokens: expected.prompt, cacheHitTokens: 0, cacheMissTokens: expected.prompt, completionTokens: expected.completion, reasoningTokens: expected.reasoning ?? 0 };
  expect(row.cost_micros).toBe(priceUsage(model, usage, row.completed_at).costMicros);
  expect(row.cost_micros).toBeGreaterThan(0);
  expect(BALANCE - (await total(accountId)).total).toBe(row.cost_micros);
}

describe("an upstream that never reports usage", () => {
  it("a non-streaming answer is billed and reported on the gateway's count", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "count yourself [[no_usage]] [[words:6]]";
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content }] });
    expect(res.status).toBe(200);
    const body = await res.json<any>();
    const text = body.choices[0].message.content;
    expect(text).toBe("Hello from the fake worker.");
    const expected = { prompt: promptOf(content), completion: tokens(text) };
    expect(body.usage).toMatchObject({ prompt_tokens: expected.prompt, completion_tokens: expected.completion });
    const row = await settledRow(id);
    expect(row.status).toBe("ok");
    await expectChargedFor(id, row, expected);
  });

  it("a streamed reasoner answer counts reasoning_content and content, and shows it on the last chunk", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "think [[no_usage]] [[words:4]]";
    const res = await post("/chat/completions", key, { model: "deepseek-reasoner", messages: [{ role: "user", content }], stream: true });
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    const reasoning = events.map((e) => e.choices?.[0]?.delta?.reasoning_content ?? "").join("");
    const answer = events.map((e) => e.choices?.[0]?.delta?.content ?? "").join("");
    expect(reasoning).toBe("Let me think.");
    const expected = { prompt: promptOf(content, "deepseek-reasoner"), completion: tokens(reasoning) + tokens(answer), reasoning: tokens(reasoning) };
    expect(events.at(-1).usage).toMatchObject({ completion_tokens: expected.completion, completion_tokens_details: { reasoning_tokens: expected.reasoning } });
    await expectChargedFor(id, await settledRow(id), expected);
  });

  it("a tool call's name and arguments, as delivered, are counted", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "call it [[no_usage]] [[tool_call]]";
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content }], tools });
    const body = await res.json<any>();
    const call = body.choices[0].message.tool_calls[0].function;
    expect(call).toEqual({ name: "get_weather", arguments: '{"city": "Paris"}' });
    const prompt = countChatPromptTokens([{ role: "user", content }], { model: "deepseek-chat", tools });
    await expectChargedFor(id, await settledRow(id), { prompt, completion: tokens(call.name + call.arguments) });
  });

  it("a stream whose upstream dies mid-way is billed for the prompt and the text delivered before it died", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "die quietly [[no_usage]] [[words:8]] [[fail_after:3]]";
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content }], stream: true });
    const { events } = await readSse(res);
    expect(events.at(-1).choices[0].finish_reason).toBe("insufficient_system_resource");
    const delivered = events.map((e) => e.choices?.[0]?.delta?.content ?? "").join("");
    expect(delivered).toBe("Hello from the");
    const row = await settledRow(id);
    expect(row.status).toBe("failed");
    await expectChargedFor(id, row, { prompt: promptOf(content), completion: tokens(delivered) });
  });
});

describe("an upstream that stops reporting usage", () => {
  it("is billed on the gateway's count of everything delivered, not the last usage it sent", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "fade out [[usage_until:2]] [[words:8]]";
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content }], stream: true, stream_options: { include_usage: true } });
    const { events } = await readSse(res);
    const delivered = events.map((e) => e.choices?.[0]?.delta?.content ?? "").join("");
    expect(delivered).toBe("Hello from the fake worker. More words");
    const expected = { prompt: promptOf(content), completion: tokens(delivered) };
    expect(expected.completion).toBeGreaterThan(2);
    expect(events.at(-1).usage).toMatchObject({ prompt_tokens: expected.prompt, completion_tokens: expected.completion });
    await expectChargedFor(id, await settledRow(id), expected);
  });

  it("an upstream that reports usage throughout is billed on it (usage_source upstream)", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages: [{ role: "user", content: "normal [[words:3]]" }] });
    const body = await res.json<any>();
    const row = await settledRow(id);
    expect(row).toMatchObject({ usage_source: "upstream", completion_tokens: body.usage.completion_tokens, cache_miss_tokens: body.usage.prompt_cache_miss_tokens });
  });
});

describe("an upstream without usage behind the Anthropic API", () => {
  it("message_start shows the prompt and message_delta the gateway's count of the answer, as billed", async () => {
    const { account: id, key } = await payingAccount(BALANCE);
    const content = "anthropic [[no_usage]] [[words:5]]";
    const res = await SELF.fetch("https://gw.test/anthropic/v1/messages", {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ model: "deepseek-chat", max_tokens: 64, stream: true, messages: [{ role: "user", content }] }),
    });
    const events = (await res.text())
      .split("\n")
      .filter((l) => l.startsWith("data: "))
      .map((l) => JSON.parse(l.slice(6)));
    const text = events.filter((e) => e.type === "content_block_delta").map((e) => e.delta.text).join("");
    expect(text).toBe("Hello from the fake worker");
    const prompt = promptOf(content);
    expect(events.find((e) => e.type === "message_start").message.usage.input_tokens).toBe(prompt);
    expect(events.find((e) => e.type === "message_delta").usage.output_tokens).toBe(tokens(text));
    await expectChargedFor(id, await settledRow(id), { prompt, completion: tokens(text) });
  });
});

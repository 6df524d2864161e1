// The normalized messages and the exact body the gateway forwards to the GPU worker.
import { describe, expect, it } from "vitest";
import { validateChatRequest } from "../../../workers/gateway/src/validation";
import { models } from "./fixtures";

const validate = (body: unknown, beta = false) => validateChatRequest(body, { beta, models });
const STREAM_OPTIONS = { include_usage: true, continuous_usage_stats: true };

describe("upstream body", () => {
  it("a minimal request: model, messages, explicit max_tokens, always streaming", () => {
    const v = validate({ model: "deepseek-chat", messages: [{ role: "user", content: "Hello" }] });
    expect(v.upstreamBody).toStrictEqual({
      model: "deepseek-chat",
      messages: [{ role: "user", content: "Hello" }],
      max_tokens: 4096,
      stream: true,
      stream_options: STREAM_OPTIONS,
    });
    expect(v).toMatchObject({ stream: false, includeUsage: false, prefixCompletion: false, logprobs: false, topLogprobs: null, tools: undefined, maxTokens: 4096 });
  });

  it("a full request: validated fields only, unknown fields dropped", () => {
    const tools = [{ type: "function", function: { name: "get_weather", description: "d", parameters: { type: "object", properties: {} } } }];
    const v = validate({
      model: "deepseek-chat",
      messages: [
        { role: "system", content: "Answer in json", name: "sys", extra: true },
        { role: "user", content: "Weather in Paris?", name: null },
      ],
      max_tokens: 100,
      temperature: 0.7,
      top_p: 0.9,
      frequency_penalty: 0.1,
      presence_penalty: 0,
      stop: ["END"],
      stream: true,
      stream_options: { include_usage: true, unknown_option: 1 },
      response_format: { type: "json_object" },
      tools,
      tool_choice: "auto",
      logprobs: true,
      top_logprobs: 5,
      // Not part of the contract: dropped.
      n: 2,
      seed: 1,
      user: "u1",
      parallel_tool_calls: false,
      metadata: { a: 1 },
    });
    expect(v.upstreamBody).toStrictEqual({
      model: "deepseek-chat",
      messages: [
        { role: "system", content: "Answer in json", name: "sys" },
        { role: "user", content: "Weather in Paris?" },
      ],
      max_tokens: 100,
      temperature: 0.7,
      top_p: 0.9,
      frequency_penalty: 0.1,
      presence_penalty: 0,
      stop: ["END"],
      response_format: { type: "json_object" },
      tools,
      tool_choice: "auto",
      logprobs: true,
      top_logprobs: 5,
      stream: true,
      stream_options: STREAM_OPTIONS,
    });
    expect(v).toMatchObject({ stream: true, includeUsage: true, logprobs: true, topLogprobs: 5, maxTokens: 100 });
  });

  it("zero-valued parameters are forwarded, not mistaken for unset", () => {
    expect(validate({ model: "deepseek-chat", messages: [{ role: "user", content: "x" }], temperature: 0, top_p: 0, stop: "" }).upstreamBody).toMatchObject({
      temperature: 0,
      top_p: 0,
      stop: "",
    });
  });

  it("the reasoner's body carries no sampling parameters", () => {
    const v = validate({ model: "deepseek-reasoner", messages: [{ role: "user", content: "9.11 or 9.8?" }], temperature: 0.6, top_p: 0.95, max_tokens: 8000, stream: true });
    expect(v.upstreamBody).toStrictEqual({
      model: "deepseek-reasoner",
      messages: [{ role: "user", content: "9.11 or 9.8?" }],
      max_tokens: 8000,
      stream: true,
      stream_options: STREAM_OPTIONS,
    });
  });

  it("does not share the stream_options object between requests", () => {
    const body = { model: "deepseek-chat", messages: [{ role: "user", content: "x" }] };
    const a = validate(body).upstreamBody.stream_options as Record<string, unknown>;
    a.include_usage = false;
    expect(validate(body).upstreamBody.stream_options).toEqual(STREAM_OPTIONS);
  });

  it("does not mutate the client's body", () => {
    const body = { model: "deepseek-chat", messages: [{ role: "user", content: [{ type: "text", text: "a" }] }], junk: 1 };
    const copy = structuredClone(body);
    validate(body);
    expect(body).toEqual(copy);
  });
});

describe("message normalization", () => {
  it("joins text parts with a newline", () => {
    const v = validate({
      model: "deepseek-chat",
      messages: [
        { role: "system", content: [{ type: "text", text: "Be brief." }] },
        { role: "user", content: [{ type: "text", text: "Part one." }, { type: "text", text: "Part two." }] },
        { role: "assistant", content: [] },
        { role: "tool", content: [{ type: "text", text: "42" }], tool_call_id: "c1" },
      ],
    });
    expect(v.messages).toStrictEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Part one.\nPart two." },
      { role: "assistant", content: "" },
      { role: "tool", content: "42", tool_call_id: "c1" },
    ]);
    expect(v.upstreamBody.messages).toBe(v.messages);
  });

  it("keeps names, tool calls and tool_call_id; drops unknown keys and prefix: false", () => {
    const call = { id: "call_1", type: "function", function: { name: "f", arguments: "{}" }, index: 0 };
    const v = validate({
      model: "deepseek-chat",
      messages: [
        { role: "user", content: "hi", name: "alice", prefix: true },
        { role: "assistant", name: "bot", tool_calls: [call], prefix: false, refusal: null },
        { role: "tool", content: "ok", tool_call_id: "call_1", name: "f" },
      ],
    });
    expect(v.messages).toStrictEqual([
      { role: "user", content: "hi", name: "alice" },
      { role: "assistant", content: null, name: "bot", tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] },
      { role: "tool", content: "ok", tool_call_id: "call_1" },
    ]);
  });

  it("an assistant message with both content and tool_calls keeps both", () => {
    const call = { id: "c", type: "function", function: { name: "f", arguments: '{"a":1}' } };
    const v = validate({ model: "deepseek-chat", messages: [{ role: "user", content: "x" }, { role: "assistant", content: "Let me check.", tool_calls: [call] }] });
    expect(v.messages[1]).toStrictEqual({ role: "assistant", content: "Let me check.", tool_calls: [call] });
  });
});

import { describe, expect, it } from "vitest";
import { anthropicErrorResponse } from "../../../workers/gateway/src/anthropic/errors";
import { AnthropicJsonEncoder } from "../../../workers/gateway/src/anthropic/response";
import { AnthropicStreamEncoder } from "../../../workers/gateway/src/anthropic/stream";
import { ApiError, authenticationFails, insufficientBalance, rateLimited, serverOverloaded } from "../../../workers/gateway/src/errors/api-error";
import type { WireUsage } from "../../../workers/gateway/src/inference/encoder";

const usage = (completion: number): WireUsage => ({
  prompt_tokens: 100,
  completion_tokens: completion,
  total_tokens: 100 + completion,
  prompt_cache_hit_tokens: 64,
  prompt_cache_miss_tokens: 36,
  completion_tokens_details: { reasoning_tokens: 0 },
});

const chunk = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) => ({
  id: "c1",
  object: "chat.completion.chunk",
  created: 1,
  model: "deepseek-chat",
  choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
});

function parseSse(text: string): { event: string; data: any }[] {
  return text
    .split("\n\n")
    .filter((frame) => frame.trim() !== "")
    .map((frame) => {
      const event = /^event: (.*)$/m.exec(frame)![1]!;
      const data = JSON.parse(/^data: (.*)$/m.exec(frame)![1]!);
      expect(data.type).toBe(event);
      return { event, data };
    });
}

const TOOL_CHUNKS = [
  chunk({ role: "assistant", content: "" }),
  chunk({ content: "Let me check." }),
  chunk({ tool_calls: [{ index: 0, id: "call_0", type: "function", function: { name: "get_weather", arguments: "" } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city"' } }] }),
  chunk({ tool_calls: [{ index: 0, function: { arguments: ': "Paris"}' } }] }),
  chunk({ tool_calls: [{ index: 1, id: "call_1", type: "function", function: { name: "get_time", arguments: "{}" } }] }),
  chunk({}, "tool_calls"),
];

const REASONING_CHUNKS = [
  chunk({ role: "assistant", content: "" }),
  chunk({ reasoning_content: "Think" }),
  chunk({ reasoning_content: "ing." }),
  chunk({ content: "Answer" }),
  chunk({ content: "" }, "length"),
];

function runStream(chunks: unknown[], stopSequences: string[] = []) {
  const encoder = new AnthropicStreamEncoder("msg_1", "deepseek-chat", stopSequences);
  let out = encoder.keepAlive();
  chunks.forEach((c, i) => (out += encoder.chunk(c, usage(i))));
  out += encoder.finish(usage(chunks.length));
  return parseSse(out);
}

describe("Anthropic stream encoder", () => {
  it("streams text and tool calls as content blocks, usage on message_start and message_delta", () => {
    const events = runStream(TOOL_CHUNKS);
    expect(events.map((e) => e.event)).toEqual([
      "ping",
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(events[1]!.data.message).toEqual({
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "deepseek-chat",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 36, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 64 },
    });
    expect(events[2]!.data).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    expect(events[3]!.data.delta).toEqual({ type: "text_delta", text: "Let me check." });
    expect(events[5]!.data).toEqual({ type: "content_block_start", index: 1, content_block: { type: "tool_use", id: "call_0", name: "get_weather", input: {} } });
    expect(events.slice(6, 8).map((e) => e.data.delta)).toEqual([
      { type: "input_json_delta", partial_json: '{"city"' },
      { type: "input_json_delta", partial_json: ': "Paris"}' },
    ]);
    expect(events[9]!.data.content_block).toMatchObject({ type: "tool_use", id: "call_1", name: "get_time" });
    expect(events[12]!.data).toEqual({
      type: "message_delta",
      delta: { stop_reason: "tool_use", stop_sequence: null },
      usage: { input_tokens: 36, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 64 },
    });
  });

  it("streams reasoning as a thinking block before the text", () => {
    const events = runStream(REASONING_CHUNKS);
    const blocks = events.filter((e) => e.event === "content_block_start").map((e) => e.data.content_block);
    expect(blocks).toEqual([{ type: "thinking", thinking: "", signature: "" }, { type: "text", text: "" }]);
    const deltas = events.filter((e) => e.event === "content_block_delta").map((e) => [e.data.index, e.data.delta]);
    expect(deltas).toEqual([
      [0, { type: "thinking_delta", thinking: "Think" }],
      [0, { type: "thinking_delta", thinking: "ing." }],
      [1, { type: "text_delta", text: "Answer" }],
    ]);
    expect(events.at(-2)!.data.delta).toEqual({ stop_reason: "max_tokens", stop_sequence: null });
  });

  it("reports a stop sequence when the worker names the one that matched", () => {
    const chunks = [chunk({ content: "a" }), chunk({ content: "" }, "stop", { stop_reason: "END" })];
    expect(runStream(chunks, ["END"]).at(-2)!.data.delta).toEqual({ stop_reason: "stop_sequence", stop_sequence: "END" });
    expect(runStream(chunks, []).at(-2)!.data.delta).toEqual({ stop_reason: "end_turn", stop_sequence: null });
  });

  it("ends with an error event when the worker fails mid-stream, or the stream ends unfinished", () => {
    const encoder = new AnthropicStreamEncoder("msg_1", "deepseek-chat");
    const out = encoder.chunk(chunk({ content: "Hel" }), usage(1)) + encoder.fail(usage(1)) + encoder.keepAlive() + encoder.finish(usage(1));
    const events = parseSse(out);
    expect(events.map((e) => e.event)).toEqual(["message_start", "content_block_start", "content_block_delta", "error"]);
    expect(events.at(-1)!.data).toEqual({ type: "error", error: { type: "overloaded_error", message: expect.any(String) } });

    const unfinished = new AnthropicStreamEncoder("msg_1", "deepseek-chat");
    expect(parseSse(unfinished.chunk(chunk({ content: "x" }), usage(1)) + unfinished.finish(usage(1))).at(-1)!.event).toBe("error");
  });
});

describe("Anthropic JSON encoder", () => {
  function run(chunks: unknown[]) {
    const encoder = new AnthropicJsonEncoder("msg_1", "deepseek-chat");
    let out = encoder.keepAlive();
    chunks.forEach((c, i) => (out += encoder.chunk(c, usage(i))));
    return JSON.parse(out + encoder.finish(usage(chunks.length)));
  }

  it("aggregates text and tool calls into one message", () => {
    expect(run(TOOL_CHUNKS)).toEqual({
      id: "msg_1",
      type: "message",
      role: "assistant",
      model: "deepseek-chat",
      content: [
        { type: "text", text: "Let me check." },
        { type: "tool_use", id: "call_0", name: "get_weather", input: { city: "Paris" } },
        { type: "tool_use", id: "call_1", name: "get_time", input: {} },
      ],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: { input_tokens: 36, output_tokens: 7, cache_creation_input_tokens: 0, cache_read_input_tokens: 64 },
    });
  });

  it("puts thinking first", () => {
    const message = run(REASONING_CHUNKS);
    expect(message.content).toEqual([
      { type: "thinking", thinking: "Thinking.", signature: "" },
      { type: "text", text: "Answer" },
    ]);
    expect(message.stop_reason).toBe("max_tokens");
  });

  it("reports a failure in Anthropic's error shape", () => {
    const encoder = new AnthropicJsonEncoder("msg_1", "deepseek-chat");
    encoder.chunk(chunk({ content: "Hel" }), usage(1));
    expect(JSON.parse(encoder.fail(usage(1)))).toMatchObject({ type: "error", error: { type: "overloaded_error" } });
  });
});

describe("Anthropic error responses", () => {
  it("keep the status and headers and use Anthropic's vocabulary", async () => {
    const cases: [ApiError, number, string][] = [
      [new ApiError(400, "Model Not Exist"), 400, "invalid_request_error"],
      [new ApiError(422, "Invalid max_tokens value"), 422, "invalid_request_error"],
      [authenticationFails("sk-abcd"), 401, "authentication_error"],
      [insufficientBalance(), 402, "billing_error"],
      [new ApiError(403, "Forbidden"), 403, "permission_error"],
      [new ApiError(404, "Not Found"), 404, "not_found_error"],
      [rateLimited(7), 429, "rate_limit_error"],
      [new ApiError(500, "boom"), 500, "api_error"],
      [serverOverloaded(), 503, "overloaded_error"],
    ];
    for (const [error, status, type] of cases) {
      const res = anthropicErrorResponse(error, "trace-1");
      expect(res.status).toBe(status);
      expect(res.headers.get("x-ds-trace-id")).toBe("trace-1");
      expect(await res.json()).toEqual({ type: "error", error: { type, message: error.message } });
    }
    expect(anthropicErrorResponse(rateLimited(7)).headers.get("retry-after")).toBe("7");
  });
});

import { describe, expect, it } from "vitest";
import { ApiError } from "../../../workers/gateway/src/errors/api-error";
import { type ModelInfo, parseMessagesRequest, toChatBody } from "../../../workers/gateway/src/anthropic/request";
import { chatRequestSchema } from "../../../workers/gateway/src/validation/chat-schema";

const MODELS: ModelInfo[] = [
  { id: "deepseek-chat", isReasoner: false, maxMaxTokens: 8192 },
  { id: "deepseek-reasoner", isReasoner: true, maxMaxTokens: 8192 },
];

const translate = (body: Record<string, unknown>) =>
  toChatBody(parseMessagesRequest({ model: "deepseek-chat", max_tokens: 100, ...body }), MODELS);

function refusal(body: unknown): ApiError {
  try {
    parseMessagesRequest(body);
  } catch (err) {
    if (err instanceof ApiError) return err;
    throw err;
  }
  throw new Error("expected a 400");
}

const text = (t: string) => [{ type: "text", text: t }];

describe("Anthropic request -> chat body", () => {
  it("translates a plain conversation with a system prompt given as blocks", () => {
    const body = translate({
      system: [{ type: "text", text: "You are terse." }, { type: "text", text: "Answer in French.", cache_control: { type: "ephemeral" } }],
      messages: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: [{ type: "text", text: "Bonjour" }] },
        { role: "user", content: [{ type: "text", text: "Again" }] },
      ],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      metadata: { user_id: "u1" },
      service_tier: "auto",
      stop_sequences: ["END"],
      stream: true,
    });
    expect(body).toEqual({
      model: "deepseek-chat",
      max_tokens: 100,
      stream: true,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["END"],
      messages: [
        { role: "system", content: [...text("You are terse."), ...text("Answer in French.")] },
        { role: "user", content: text("Hi") },
        { role: "assistant", content: text("Bonjour") },
        { role: "user", content: text("Again") },
      ],
    });
  });

  it("produces a body the chat schema accepts", () => {
    const body = translate({
      system: "sys",
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: [{ type: "text", text: "Checking." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "18C" }] },
      ],
      tools: [{ name: "get_weather", description: "Weather", input_schema: { type: "object", properties: { city: { type: "string" } } } }],
      tool_choice: { type: "auto" },
    });
    expect(chatRequestSchema.safeParse(body).success).toBe(true);
  });

  it("maps tool_use to tool_calls and tool_result to tool messages before the user's text", () => {
    const body = translate({
      messages: [
        { role: "user", content: "Weather in Paris and Rome?" },
        {
          role: "assistant",
          content: [
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
            { type: "tool_use", id: "toolu_2", name: "get_weather", input: { city: "Rome" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "18C" },
            { type: "tool_result", tool_use_id: "toolu_2", content: [{ type: "text", text: "25C" }], is_error: false },
            { type: "text", text: "Thanks" },
          ],
        },
      ],
    });
    expect(body.messages).toEqual([
      { role: "user", content: text("Weather in Paris and Rome?") },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
          { id: "toolu_2", type: "function", function: { name: "get_weather", arguments: '{"city":"Rome"}' } },
        ],
      },
      { role: "tool", tool_call_id: "toolu_1", content: text("18C") },
      { role: "tool", tool_call_id: "toolu_2", content: text("25C") },
      { role: "user", content: text("Thanks") },
    ]);
  });

  it("maps tools and every tool_choice", () => {
    const tools = [{ name: "lookup", description: "Look up", input_schema: { type: "object" }, cache_control: { type: "ephemeral" } }];
    const choice = (tool_choice: unknown) => translate({ messages: [{ role: "user", content: "x" }], tools, tool_choice }).tool_choice;
    expect(translate({ messages: [{ role: "user", content: "x" }], tools }).tools).toEqual([
      { type: "function", function: { name: "lookup", description: "Look up", parameters: { type: "object" } } },
    ]);
    expect(choice({ type: "none" })).toBe("none");
    expect(choice({ type: "auto", disable_parallel_tool_use: true })).toBe("auto");
    expect(choice({ type: "any" })).toBe("required");
    expect(choice({ type: "tool", name: "lookup" })).toEqual({ type: "function", function: { name: "lookup" } });
  });

  it("drops thinking blocks of earlier turns and merges consecutive turns of one role", () => {
    const body = translate({
      model: "deepseek-reasoner",
      messages: [
        { role: "user", content: "a" },
        { role: "user", content: "b" },
        { role: "assistant", content: [{ type: "thinking", thinking: "hmm", signature: "sig" }, { type: "redacted_thinking", data: "xx" }, { type: "text", text: "c" }] },
        { role: "user", content: "d" },
      ],
    });
    expect(body.model).toBe("deepseek-reasoner");
    expect(body.messages).toEqual([
      { role: "user", content: [...text("a"), ...text("b")] },
      { role: "assistant", content: text("c") },
      { role: "user", content: text("d") },
    ]);
  });

  it("turns a trailing assistant message (prefill) into a prefix completion; the reasoner keeps its thinking there", () => {
    const messages = [
      { role: "user", content: "Give JSON" },
      { role: "assistant", content: [{ type: "thinking", thinking: "plan" }, { type: "text", text: "{" }] },
    ];
    expect(translate({ messages }).messages.at(-1)).toEqual({ role: "assistant", content: text("{"), prefix: true });
    expect(translate({ model: "deepseek-reasoner", messages }).messages.at(-1)).toEqual({
      role: "assistant",
      content: text("{"),
      prefix: true,
      reasoning_content: "plan",
    });
  });

  it("maps unknown model names to deepseek-chat, or to the reasoner when thinking is enabled without tools", () => {
    const messages = [{ role: "user", content: "x" }];
    expect(translate({ model: "claude-sonnet-4-20250514", messages }).model).toBe("deepseek-chat");
    expect(translate({ model: "claude-opus-4", messages, thinking: { type: "enabled", budget_tokens: 2048 } }).model).toBe("deepseek-reasoner");
    expect(translate({ model: "claude-opus-4", messages, thinking: { type: "disabled" } }).model).toBe("deepseek-chat");
    const tools = [{ name: "t", input_schema: { type: "object" } }];
    expect(translate({ model: "claude-opus-4", messages, tools, thinking: { type: "enabled", budget_tokens: 2048 } }).model).toBe("deepseek-chat");
    // A registry id is taken as given; thinking does not override it.
    expect(translate({ model: "deepseek-chat", messages, thinking: { type: "enabled", budget_tokens: 2048 } }).model).toBe("deepseek-chat");
  });

  it("clamps max_tokens to the model's maximum", () => {
    expect(translate({ max_tokens: 32000, messages: [{ role: "user", content: "x" }] }).max_tokens).toBe(8192);
    expect(translate({ max_tokens: 5, messages: [{ role: "user", content: "x" }] }).max_tokens).toBe(5);
  });
});

describe("Anthropic request refusals (400)", () => {
  const base = { model: "deepseek-chat", max_tokens: 10 };

  it("refuses image and document blocks, also inside tool results", () => {
    const image = { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } };
    let err = refusal({ ...base, messages: [{ role: "user", content: [{ type: "text", text: "see" }, image] }] });
    expect(err.status).toBe(400);
    expect(err.message).toBe("messages.0.content.1: image content blocks are not supported");
    err = refusal({ ...base, messages: [{ role: "user", content: [{ type: "document", source: { type: "text", data: "x" } }] }] });
    expect(err.message).toBe("messages.0.content.0: document content blocks are not supported");
    err = refusal({ ...base, messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "t", content: [image] }] }] });
    expect(err.message).toBe("messages.0.content.0.content.0: image content blocks are not supported");
  });

  it("names the field of a malformed body", () => {
    expect(refusal({ model: "x", messages: [{ role: "user", content: "hi" }] }).message).toMatch(/^max_tokens: /);
    expect(refusal({ ...base, max_tokens: 0, messages: [{ role: "user", content: "hi" }] }).param).toBe("max_tokens");
    expect(refusal({ ...base, messages: [] }).param).toBe("messages");
    expect(refusal({ ...base, temperature: 2.5, messages: [{ role: "user", content: "hi" }] }).param).toBe("temperature");
    expect(refusal({ ...base, messages: [{ role: "system", content: "hi" }] }).param).toBe("messages.0.role");
    expect(refusal({ ...base, tools: [{ name: "web_search", type: "web_search_20250305" }], messages: [{ role: "user", content: "hi" }] }).status).toBe(400);
    expect(refusal("nope").status).toBe(400);
  });

  it("refuses blocks in the wrong role", () => {
    expect(() => translate({ messages: [{ role: "user", content: [{ type: "tool_use", id: "t", name: "n", input: {} }] }] })).toThrow(
      "messages.0.content: tool_use blocks are not allowed in user messages",
    );
    expect(() => translate({ messages: [{ role: "user", content: "q" }, { role: "assistant", content: [{ type: "tool_result", tool_use_id: "t" }] }] })).toThrow(
      "messages.1.content: tool_result blocks are not allowed in assistant messages",
    );
  });
});

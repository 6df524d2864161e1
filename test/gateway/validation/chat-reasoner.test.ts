// deepseek-reasoner's rules and chat prefix completion (/beta).
import { describe, expect, it } from "vitest";
import { validateChatRequest } from "../../../workers/gateway/src/validation";
import { expectError, models } from "./fixtures";

const REASONING =
  "The reasoning_content is an intermediate result for display purposes only and will not be included in the context for inference. Please remove the reasoning_content from your message to reduce network traffic.";
const successive = (i: number, j: number) =>
  `deepseek-reasoner does not support successive user or assistant messages (messages[${i}] and messages[${j}] in your input). You should interleave the user/assistant messages in the message sequence.`;

const validate = (body: unknown, beta = false) => validateChatRequest(body, { beta, models });
const system = (content: string) => ({ role: "system", content });
const user = (content: string) => ({ role: "user", content });
const assistant = (content: string, extra: Record<string, unknown> = {}) => ({ role: "assistant", content, ...extra });
const reasoner = (extra: Record<string, unknown> = {}) => ({ model: "deepseek-reasoner", messages: [user("hi")], ...extra });
const chat = (extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [user("hi")], ...extra });

describe("deepseek-reasoner: ignored sampling parameters", () => {
  it("accepts them and drops them from the upstream body", () => {
    const v = validate(reasoner({ temperature: 0.2, top_p: 0.5, frequency_penalty: 1, presence_penalty: -1, stop: ["x"] }));
    for (const field of ["temperature", "top_p", "frequency_penalty", "presence_penalty"]) expect(v.upstreamBody).not.toHaveProperty(field);
    expect(v.upstreamBody.stop).toEqual(["x"]);
  });

  it("still checks their types and ranges", () => {
    expectError(() => validate(reasoner({ temperature: "warm" })), 400, /temperature: invalid type/);
    expectError(() => validate(reasoner({ temperature: 3 })), 422, "Invalid temperature value, the valid range of temperature is [0, 2]");
  });

  it("deepseek-chat forwards them", () => {
    expect(validate(chat({ temperature: 0.2, top_p: 0.5, frequency_penalty: 1, presence_penalty: -1 })).upstreamBody).toMatchObject({
      temperature: 0.2,
      top_p: 0.5,
      frequency_penalty: 1,
      presence_penalty: -1,
    });
  });
});

describe("deepseek-reasoner: unsupported features are 400", () => {
  it.each<[string, Record<string, unknown>, string, string]>([
    ["logprobs", { logprobs: true }, "logprobs is not supported by this model (deepseek-reasoner)", "logprobs"],
    ["top_logprobs", { logprobs: true, top_logprobs: 2 }, "logprobs is not supported by this model (deepseek-reasoner)", "logprobs"],
    ["top_logprobs alone", { top_logprobs: 2 }, "logprobs is not supported by this model (deepseek-reasoner)", "top_logprobs"],
    ["tools", { tools: [{ type: "function", function: { name: "f" } }] }, "Function calling (tools) is not supported by this model (deepseek-reasoner)", "tools"],
    [
      "json_object",
      { messages: [user("answer in json")], response_format: { type: "json_object" } },
      "response_format of type 'json_object' is not supported by this model (deepseek-reasoner)",
      "response_format",
    ],
  ])("%s", (_n, extra, message, param) => {
    expect(expectError(() => validate(reasoner(extra)), 400, message).param).toBe(param);
  });

  it.each([
    ["logprobs: false", { logprobs: false }],
    ["an empty tools list", { tools: [] }],
    ["response_format text", { response_format: { type: "text" } }],
    ["tool_choice none", { tool_choice: "none" }],
  ])("accepts %s", (_n, extra) => {
    expect(validate(reasoner(extra)).model.id).toBe("deepseek-reasoner");
  });

  it("json_schema keeps its own text on the reasoner", () => {
    expectError(() => validate(reasoner({ response_format: { type: "json_schema" } })), 400, "This response_format type is unavailable now");
  });
});

describe("deepseek-reasoner: reasoning_content in input", () => {
  it("is a 400 with the contract's text on a history message", () => {
    const messages = [user("a"), assistant("b", { reasoning_content: "thought" }), user("c")];
    expect(expectError(() => validate(reasoner({ messages })), 400, REASONING).param).toBe("messages[1].reasoning_content");
  });

  it("is a 400 on a last assistant message without prefix", () => {
    expectError(() => validate(reasoner({ messages: [user("a"), assistant("b", { reasoning_content: "t" })] }), true), 400, REASONING);
  });

  it("is a 400 on a prefix message outside /beta (prefix is checked first there)", () => {
    expectError(
      () => validate(reasoner({ messages: [user("a"), assistant("b", { prefix: true, reasoning_content: "t" })] })),
      400,
      "messages[1].prefix: chat prefix completion is only available on the beta API (base URL /beta)",
    );
  });

  it("is allowed on the /beta prefix message and forwarded", () => {
    const v = validate(reasoner({ messages: [user("a"), assistant("The answer", { prefix: true, reasoning_content: "Let me think" })] }), true);
    expect(v.prefixCompletion).toBe(true);
    expect(v.messages[1]).toEqual({ role: "assistant", content: "The answer", prefix: true, reasoning_content: "Let me think" });
    expect((v.upstreamBody.messages as unknown[])[1]).toEqual(v.messages[1]);
  });

  it("still rejects an earlier message's reasoning_content in a prefix completion", () => {
    const messages = [user("a"), assistant("b", { reasoning_content: "old" }), user("c"), assistant("d", { prefix: true, reasoning_content: "t" })];
    expect(expectError(() => validate(reasoner({ messages }), true), 400, REASONING).param).toBe("messages[1].reasoning_content");
  });

  it("null reasoning_content counts as absent", () => {
    expect(validate(reasoner({ messages: [user("a"), assistant("b", { reasoning_content: null }), user("c")] })).messages[1]).toEqual({ role: "assistant", content: "b" });
  });

  it("deepseek-chat drops it instead (it has no chain of thought to continue)", () => {
    const v = validate(chat({ messages: [user("a"), assistant("b", { reasoning_content: "t" }), user("c"), assistant("d", { prefix: true, reasoning_content: "t" })] }), true);
    expect(v.messages[1]).toEqual({ role: "assistant", content: "b" });
    expect(v.messages[3]).toEqual({ role: "assistant", content: "d", prefix: true });
  });
});

describe("deepseek-reasoner: successive messages", () => {
  it.each<[string, unknown[], number, number]>([
    ["two users", [user("a"), user("b")], 0, 1],
    ["two users after a system message", [system("s"), user("a"), user("b")], 1, 2],
    ["a system message between two users", [user("a"), system("s"), user("b")], 0, 2],
    ["two assistants", [user("a"), assistant("b"), assistant("c"), user("d")], 1, 2],
    ["the first offending pair is reported", [user("a"), assistant("b"), user("c"), user("d"), assistant("e"), assistant("f")], 2, 3],
    ["a user after a user before a prefix", [user("a"), user("b"), assistant("c", { prefix: true })], 0, 1],
  ])("%s -> messages[%d] and messages[%d]", (_n, messages, i, j) => {
    expect(expectError(() => validate(reasoner({ messages }), true), 400, successive(i, j)).param).toBe("messages");
  });

  it.each<[string, unknown[]]>([
    ["alternating turns", [system("s"), user("a"), assistant("b"), user("c")]],
    ["two system messages", [system("s"), system("t"), user("a")]],
    ["an assistant first", [assistant("hello"), user("a")]],
    ["a tool message between turns", [user("a"), assistant("b"), { role: "tool", content: "r", tool_call_id: "c" }, assistant("d"), user("e")]],
  ])("accepts %s", (_n, messages) => {
    expect(validate(reasoner({ messages })).messages).toHaveLength(messages.length);
  });

  it("deepseek-chat accepts successive messages", () => {
    expect(validate(chat({ messages: [user("a"), user("b"), assistant("c"), assistant("d")] })).messages).toHaveLength(4);
  });
});

describe("chat prefix completion", () => {
  const prefixed = [user("Write a poem"), assistant("Roses are", { prefix: true })];

  it("is a prefix completion under /beta", () => {
    const v = validate(chat({ messages: prefixed }), true);
    expect(v.prefixCompletion).toBe(true);
    expect((v.upstreamBody.messages as unknown[])[1]).toEqual({ role: "assistant", content: "Roses are", prefix: true });
  });

  it("is a 400 outside /beta", () => {
    expect(expectError(() => validate(chat({ messages: prefixed })), 400, "messages[1].prefix: chat prefix completion is only available on the beta API (base URL /beta)").param).toBe(
      "messages[1].prefix",
    );
  });

  it("is a 400 on any message but the last", () => {
    const messages = [user("a"), assistant("b", { prefix: true }), user("c")];
    expect(expectError(() => validate(chat({ messages }), true), 400, "messages[1].prefix: only the last message may set prefix: true").param).toBe("messages[1].prefix");
  });

  it("needs content to continue", () => {
    const messages = [user("a"), assistant(null as unknown as string, { prefix: true, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] })];
    expectError(() => validate(chat({ messages }), true), 400, "messages[1].content: the prefix message must have content to continue");
  });

  it.each([
    ["no prefix flag", [user("a"), assistant("b")]],
    ["prefix: false", [user("a"), assistant("b", { prefix: false })]],
    ["a user message last", [user("a")]],
  ])("is not a prefix completion with %s", (_n, messages) => {
    for (const beta of [false, true]) {
      const v = validate(chat({ messages }), beta);
      expect(v.prefixCompletion).toBe(false);
      for (const m of v.upstreamBody.messages as Record<string, unknown>[]) expect(m).not.toHaveProperty("prefix");
    }
  });

  it("content parts on the prefix message are joined", () => {
    const v = validate(chat({ messages: [user("a"), { role: "assistant", content: [{ type: "text", text: "def f():" }], prefix: true }] }), true);
    expect(v.messages[1]).toEqual({ role: "assistant", content: "def f():", prefix: true });
  });
});

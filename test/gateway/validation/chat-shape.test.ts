// Malformed chat bodies: 400 with a message naming the field path; unknown model.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { listModels } from "../../../workers/gateway/src/db/models";
import { validateChatRequest } from "../../../workers/gateway/src/validation";
import { expectError, models, thrown } from "./fixtures";

const validate = (body: unknown, beta = false) => validateChatRequest(body, { beta, models });
const user = (content: unknown) => ({ role: "user", content });
const chat = (extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [user("hi")], ...extra });
const D = "Failed to deserialize the JSON body into the target type: ";

describe("the test registry", () => {
  it("matches the seeded models in D1", async () => {
    const seeded = await listModels(env.DB);
    expect(seeded.map(({ createdAt, ...m }) => m)).toEqual([...models.values()].map(({ createdAt, ...m }) => m));
  });
});

describe("chat body shape (400)", () => {
  const cases: [string, unknown, string, string | null][] = [
    ["array body", [], `${D}the request body must be a JSON object`, null],
    ["string body", "hello", `${D}the request body must be a JSON object`, null],
    ["null body", null, `${D}the request body must be a JSON object`, null],
    ["number body", 42, `${D}the request body must be a JSON object`, null],
    ["missing model", { messages: [user("hi")] }, `${D}missing field \`model\``, "model"],
    ["model not a string", chat({ model: 7 }), `${D}model: invalid type: integer \`7\`, expected a string`, "model"],
    ["missing messages", { model: "deepseek-chat" }, `${D}missing field \`messages\``, "messages"],
    ["messages not an array", chat({ messages: "hi" }), `${D}messages: invalid type: string "hi", expected an array`, "messages"],
    ["messages null", chat({ messages: null }), `${D}messages: invalid type: null, expected an array`, "messages"],
    ["empty messages", chat({ messages: [] }), "messages: invalid length 0, expected at least one message", "messages"],
    ["message not an object", chat({ messages: ["hi"] }), `${D}messages[0]: invalid type: string "hi", expected a JSON object`, "messages[0]"],
    ["missing role", chat({ messages: [{ content: "hi" }] }), `${D}messages[0]: missing field \`role\``, "messages[0].role"],
    [
      "unknown role",
      chat({ messages: [user("a"), { role: "developer", content: "x" }] }),
      `${D}messages[1].role: unknown variant \`developer\`, expected one of \`system\`, \`user\`, \`assistant\`, \`tool\``,
      "messages[1].role",
    ],
    ["missing content", chat({ messages: [{ role: "user" }] }), `${D}messages[0]: missing field \`content\``, "messages[0].content"],
    ["null user content", chat({ messages: [user(null)] }), `${D}messages[0].content: invalid type: null, expected a string or an array`, "messages[0].content"],
    [
      "numeric content",
      chat({ messages: [{ role: "system", content: "s" }, user(5)] }),
      `${D}messages[1].content: invalid type: integer \`5\`, expected a string or an array`,
      "messages[1].content",
    ],
    [
      "image part",
      chat({ messages: [user([{ type: "image_url", image_url: { url: "x" } }])] }),
      `${D}messages[0].content[0].type: unknown variant \`image_url\`, expected \`text\``,
      "messages[0].content[0].type",
    ],
    [
      "text part without text",
      chat({ messages: [user([{ type: "text", text: "a" }, { type: "text" }])] }),
      `${D}messages[0].content[1]: missing field \`text\``,
      "messages[0].content[1].text",
    ],
    ["name not a string", chat({ messages: [{ role: "user", content: "x", name: 1 }] }), `${D}messages[0].name: invalid type: integer \`1\`, expected a string`, "messages[0].name"],
    [
      "tool message without tool_call_id",
      chat({ messages: [user("a"), { role: "tool", content: "42" }] }),
      `${D}messages[1]: missing field \`tool_call_id\``,
      "messages[1].tool_call_id",
    ],
    [
      "assistant content number",
      chat({ messages: [user("a"), { role: "assistant", content: 1 }] }),
      `${D}messages[1].content: invalid type: integer \`1\`, expected a string or an array`,
      "messages[1].content",
    ],
    [
      "tool call of another type",
      chat({ messages: [user("a"), { role: "assistant", content: null, tool_calls: [{ id: "c", type: "code", function: { name: "f", arguments: "{}" } }] }] }),
      `${D}messages[1].tool_calls[0].type: unknown variant \`code\`, expected \`function\``,
      "messages[1].tool_calls[0].type",
    ],
    [
      "tool call arguments as an object",
      chat({ messages: [user("a"), { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: {} } }] }] }),
      `${D}messages[1].tool_calls[0].function.arguments: invalid type: a map, expected a string`,
      "messages[1].tool_calls[0].function.arguments",
    ],
    [
      "tool call without id",
      chat({ messages: [user("a"), { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: "{}" } }] }] }),
      `${D}messages[1].tool_calls[0]: missing field \`id\``,
      "messages[1].tool_calls[0].id",
    ],
    ["prefix not a boolean", chat({ messages: [user("a"), { role: "assistant", content: "x", prefix: "yes" }] }), `${D}messages[1].prefix: invalid type: string "yes", expected a boolean`, "messages[1].prefix"],
    [
      "reasoning_content not a string",
      chat({ messages: [user("a"), { role: "assistant", content: "x", reasoning_content: 1 }] }),
      `${D}messages[1].reasoning_content: invalid type: integer \`1\`, expected a string`,
      "messages[1].reasoning_content",
    ],
    ["temperature as a string", chat({ temperature: "hot" }), `${D}temperature: invalid type: string "hot", expected a number`, "temperature"],
    ["top_p as a boolean", chat({ top_p: true }), `${D}top_p: invalid type: boolean \`true\`, expected a number`, "top_p"],
    ["frequency_penalty as an array", chat({ frequency_penalty: [1] }), `${D}frequency_penalty: invalid type: a sequence, expected a number`, "frequency_penalty"],
    ["presence_penalty as a string", chat({ presence_penalty: "0" }), `${D}presence_penalty: invalid type: string "0", expected a number`, "presence_penalty"],
    ["max_tokens as a string", chat({ max_tokens: "100" }), `${D}max_tokens: invalid type: string "100", expected a number`, "max_tokens"],
    ["max_tokens fractional", chat({ max_tokens: 1.5 }), `${D}max_tokens: invalid type: floating point \`1.5\`, expected an integer`, "max_tokens"],
    ["stream as a string", chat({ stream: "true" }), `${D}stream: invalid type: string "true", expected a boolean`, "stream"],
    ["stream_options not an object", chat({ stream: true, stream_options: true }), `${D}stream_options: invalid type: boolean \`true\`, expected a JSON object`, "stream_options"],
    [
      "include_usage as a string",
      chat({ stream: true, stream_options: { include_usage: "yes" } }),
      `${D}stream_options.include_usage: invalid type: string "yes", expected a boolean`,
      "stream_options.include_usage",
    ],
    ["stop as a number", chat({ stop: 5 }), `${D}stop: invalid type: integer \`5\`, expected a string or an array`, "stop"],
    ["stop with a number inside", chat({ stop: ["a", 1] }), `${D}stop[1]: invalid type: integer \`1\`, expected a string`, "stop[1]"],
    ["logprobs as a number", chat({ logprobs: 1 }), `${D}logprobs: invalid type: integer \`1\`, expected a boolean`, "logprobs"],
    ["top_logprobs fractional", chat({ logprobs: true, top_logprobs: 2.5 }), `${D}top_logprobs: invalid type: floating point \`2.5\`, expected an integer`, "top_logprobs"],
    ["response_format a string", chat({ response_format: "json_object" }), `${D}response_format: invalid type: string "json_object", expected a JSON object`, "response_format"],
    [
      "response_format unknown type",
      chat({ response_format: { type: "xml" } }),
      `${D}response_format.type: unknown variant \`xml\`, expected one of \`text\`, \`json_object\`, \`json_schema\``,
      "response_format.type",
    ],
    ["tools not an array", chat({ tools: {} }), `${D}tools: invalid type: a map, expected an array`, "tools"],
    ["tool of another type", chat({ tools: [{ type: "retrieval", function: { name: "f" } }] }), `${D}tools[0].type: unknown variant \`retrieval\`, expected \`function\``, "tools[0].type"],
    ["tool without function", chat({ tools: [{ type: "function" }] }), `${D}tools[0]: missing field \`function\``, "tools[0].function"],
    ["tool parameters an array", chat({ tools: [{ type: "function", function: { name: "f", parameters: [] } }] }), `${D}tools[0].function.parameters: invalid type: a sequence, expected a JSON object`, "tools[0].function.parameters"],
    ["tool strict a string", chat({ tools: [{ type: "function", function: { name: "f", strict: "true" } }] }), `${D}tools[0].function.strict: invalid type: string "true", expected a boolean`, "tools[0].function.strict"],
    [
      "tool_choice unknown string",
      chat({ tool_choice: "any" }),
      `${D}tool_choice: unknown variant \`any\`, expected one of \`none\`, \`auto\`, \`required\``,
      "tool_choice",
    ],
    ["tool_choice object without function", chat({ tool_choice: { type: "function" } }), `${D}tool_choice: missing field \`function\``, "tool_choice.function"],
  ];

  it.each(cases)("%s", (_name, body, message, param) => {
    const err = expectError(() => validate(body), 400, message);
    expect(err.param).toBe(param);
    expect(err.toJSON().error.type).toBe("invalid_request_error");
  });

  it.each([
    ["empty", ""],
    ["a space", " "],
    ["a dot", "get.weather"],
    ["65 characters", "a".repeat(65)],
    ["non-ASCII", "wetter_für_morgen"],
  ])("rejects a function name with %s", (_name, fnName) => {
    const err = expectError(
      () => validate(chat({ tools: [{ type: "function", function: { name: fnName } }] })),
      400,
      "tools[0].function.name: invalid function name: it must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes",
    );
    expect(err.param).toBe("tools[0].function.name");
  });

  it.each(["get_weather", "a", "A-b_9", "x".repeat(64)])("accepts the function name %s", (fnName) => {
    expect(validate(chat({ tools: [{ type: "function", function: { name: fnName } }] })).tools?.[0]?.function.name).toBe(fnName);
  });
});

describe("model", () => {
  it.each(["gpt-4o", "deepseek-coder", "DeepSeek-Chat", ""])("an unknown model %j is 400 Model Not Exist", (model) => {
    expectError(() => validate(chat({ model })), 400, "Model Not Exist");
  });

  it("a disabled model does not exist", () => {
    const disabled = new Map([...models].map(([id, m]) => [id, { ...m, enabled: id !== "deepseek-chat" }]));
    expectError(() => validateChatRequest(chat(), { beta: false, models: disabled }), 400, "Model Not Exist");
  });

  it("shape errors come before the model lookup", () => {
    expectError(() => validate(chat({ model: "nope", messages: [] })), 400, "messages: invalid length 0, expected at least one message");
  });

  it("resolves both seeded models", () => {
    expect(validate(chat()).model.id).toBe("deepseek-chat");
    expect(validate(chat({ model: "deepseek-reasoner" })).model.isReasoner).toBe(true);
  });
});

describe("assistant messages", () => {
  it("need content or tool_calls", () => {
    for (const assistant of [{ role: "assistant" }, { role: "assistant", content: null }, { role: "assistant", content: null, tool_calls: [] }]) {
      const err = expectError(() => validate(chat({ messages: [user("a"), assistant, user("b")] })), 400, "messages[1]: an assistant message must have content or tool_calls");
      expect(err.param).toBe("messages[1]");
    }
  });

  it("may have null content with tool_calls", () => {
    const call = { id: "call_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } };
    const v = validate(chat({ messages: [user("weather?"), { role: "assistant", content: null, tool_calls: [call] }, { role: "tool", content: "20C", tool_call_id: "call_1" }] }));
    expect(v.messages[1]).toEqual({ role: "assistant", content: null, tool_calls: [call] });
    expect(v.messages[2]).toEqual({ role: "tool", content: "20C", tool_call_id: "call_1" });
  });
});

describe("the thrown error", () => {
  it("renders the contract's envelope", () => {
    expect(thrown(() => validate(chat({ temperature: 9 }))).toJSON()).toEqual({
      error: { message: "Invalid temperature value, the valid range of temperature is [0, 2]", type: "invalid_request_error", param: "temperature", code: "invalid_parameter" },
    });
  });

  it("reports a type error before a range error anywhere in the body", () => {
    expectError(() => validate(chat({ temperature: 9, top_p: "x" })), 400, `${D}top_p: invalid type: string "x", expected a number`);
  });
});

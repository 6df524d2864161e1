// Parameter ranges (422), max_tokens (400 by the contract), and the rules on stop, streaming,
// logprobs, response_format, tools and tool_choice.
import { describe, expect, it } from "vitest";
import { validateChatRequest } from "../../../workers/gateway/src/validation";
import { expectError, models } from "./fixtures";

const validate = (body: unknown, beta = false) => validateChatRequest(body, { beta, models });
const user = (content: string) => ({ role: "user", content });
const chat = (extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [user("hi")], ...extra });
const fn = (name: string, extra: Record<string, unknown> = {}) => ({ type: "function", function: { name, ...extra } });

describe("numeric ranges", () => {
  const ranges: [string, number, number][] = [
    ["temperature", 0, 2],
    ["top_p", 0, 1],
    ["frequency_penalty", -2, 2],
    ["presence_penalty", -2, 2],
  ];
  const message = (field: string, min: number, max: number) => `Invalid ${field} value, the valid range of ${field} is [${min}, ${max}]`;

  describe.each(ranges)("%s in [%d, %d]", (field, min, max) => {
    it.each([min, max, (min + max) / 2])("accepts %d", (value) => {
      expect(validate(chat({ [field]: value })).upstreamBody[field]).toBe(value);
    });

    it.each([min - 0.01, max + 0.01, min - 100, max + 1e9])("rejects %d with 422 naming the field and range", (value) => {
      const err = expectError(() => validate(chat({ [field]: value })), 422, message(field, min, max));
      expect(err.param).toBe(field);
      expect(err.toJSON().error.code).toBe("invalid_parameter");
    });

    it("treats null as unset", () => {
      expect(validate(chat({ [field]: null })).upstreamBody).not.toHaveProperty(field);
    });
  });

  it("top_logprobs in [0, 20]", () => {
    expect(validate(chat({ logprobs: true, top_logprobs: 0 })).topLogprobs).toBe(0);
    expect(validate(chat({ logprobs: true, top_logprobs: 20 })).topLogprobs).toBe(20);
    for (const value of [-1, 21, 1000]) {
      expectError(() => validate(chat({ logprobs: true, top_logprobs: value })), 422, message("top_logprobs", 0, 20));
    }
  });
});

describe("max_tokens", () => {
  const text = "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]";

  it.each([0, -1, 8193, 100000, 1e20])("%d is the contract's 400", (value) => {
    const err = expectError(() => validate(chat({ max_tokens: value })), 400, text);
    expect(err.param).toBe("max_tokens");
  });

  it.each([1, 4096, 8192])("%d is accepted and forwarded", (value) => {
    const v = validate(chat({ max_tokens: value }));
    expect(v.maxTokens).toBe(value);
    expect(v.upstreamBody.max_tokens).toBe(value);
  });

  it.each([undefined, null])("defaults to the model's default when %s", (value) => {
    const v = validate(chat({ max_tokens: value }));
    expect(v.maxTokens).toBe(4096);
    expect(v.upstreamBody.max_tokens).toBe(4096);
  });

  it("takes its bounds from the registry", () => {
    const small = new Map([...models].map(([id, m]) => [id, { ...m, defaultMaxTokens: 1000, maxMaxTokens: 2048 }]));
    expect(validateChatRequest(chat(), { beta: false, models: small }).maxTokens).toBe(1000);
    expectError(
      () => validateChatRequest(chat({ max_tokens: 2049 }), { beta: false, models: small }),
      400,
      "Invalid max_tokens value, the valid range of max_tokens is [1, 2048]",
    );
  });

  it("applies the same range to the reasoner's final answer", () => {
    expect(validate(chat({ model: "deepseek-reasoner", max_tokens: 8192 })).maxTokens).toBe(8192);
    expectError(() => validate(chat({ model: "deepseek-reasoner", max_tokens: 8193 })), 400, text);
  });
});

describe("stop", () => {
  it.each([["a string", "\n\n"], ["an empty list", []], ["16 strings", Array.from({ length: 16 }, (_, i) => `s${i}`)]])("accepts %s", (_n, stop) => {
    expect(validate(chat({ stop })).upstreamBody.stop).toEqual(stop);
  });

  it("rejects 17 strings with 422", () => {
    const err = expectError(() => validate(chat({ stop: Array.from({ length: 17 }, (_, i) => `s${i}`) })), 422, "Invalid stop value, at most 16 stop sequences are allowed");
    expect(err.param).toBe("stop");
  });
});

describe("streaming flags", () => {
  it.each([
    [{}, false, false],
    [{ stream: false }, false, false],
    [{ stream: null }, false, false],
    [{ stream: true }, true, false],
    [{ stream: true, stream_options: { include_usage: true } }, true, true],
    [{ stream: true, stream_options: { include_usage: false } }, true, false],
    [{ stream: true, stream_options: {} }, true, false],
    [{ stream: true, stream_options: null }, true, false],
    // stream_options without stream is accepted and has no effect (there is no stream to put usage in).
    [{ stream_options: { include_usage: true } }, false, false],
    [{ stream: false, stream_options: { include_usage: true } }, false, false],
  ])("%j -> stream %s, includeUsage %s", (extra, stream, includeUsage) => {
    const v = validate(chat(extra));
    expect({ stream: v.stream, includeUsage: v.includeUsage }).toEqual({ stream, includeUsage });
    expect(v.upstreamBody.stream).toBe(true);
    expect(v.upstreamBody.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
  });
});

describe("logprobs", () => {
  it("top_logprobs needs logprobs: true", () => {
    for (const extra of [{}, { logprobs: false }, { logprobs: null }]) {
      const err = expectError(() => validate(chat({ ...extra, top_logprobs: 5 })), 400, "top_logprobs: logprobs must be set to true when top_logprobs is used");
      expect(err.param).toBe("top_logprobs");
    }
  });

  it.each([
    [{}, false, null],
    [{ logprobs: false }, false, null],
    [{ logprobs: true }, true, null],
    [{ logprobs: true, top_logprobs: 3 }, true, 3],
    [{ logprobs: true, top_logprobs: null }, true, null],
  ])("%j -> logprobs %s, topLogprobs %s", (extra, logprobs, topLogprobs) => {
    const v = validate(chat(extra));
    expect({ logprobs: v.logprobs, topLogprobs: v.topLogprobs }).toEqual({ logprobs, topLogprobs });
  });

  it("forwards logprobs only when asked", () => {
    expect(validate(chat({ logprobs: false })).upstreamBody).not.toHaveProperty("logprobs");
    expect(validate(chat({ logprobs: true, top_logprobs: 2 })).upstreamBody).toMatchObject({ logprobs: true, top_logprobs: 2 });
  });
});

describe("response_format", () => {
  const JSON_WORD = "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'";

  it("json_schema is unavailable", () => {
    const err = expectError(
      () => validate(chat({ response_format: { type: "json_schema", json_schema: { name: "x", schema: {} } } })),
      400,
      "This response_format type is unavailable now",
    );
    expect(err.param).toBe("response_format");
  });

  it.each([
    ["a user message", [user("Reply in JSON please")]],
    ["a system message", [{ role: "system", content: "You output json." }, user("hi")]],
    ["a text part", [{ role: "user", content: [{ type: "text", text: "hi" }, { type: "text", text: "as Json" }] }]],
    ["mixed case", [user("use jSoN")]],
  ])("json_object is accepted when %s mentions json", (_n, messages) => {
    expect(validate(chat({ messages, response_format: { type: "json_object" } })).upstreamBody.response_format).toEqual({ type: "json_object" });
  });

  it.each([
    ["no message mentions it", [user("hello")]],
    ["only an assistant message mentions it", [user("hello"), { role: "assistant", content: "json" }, user("again")]],
    ["only a tool message mentions it", [user("hi"), { role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }, { role: "tool", content: "json", tool_call_id: "c" }]],
  ])("json_object is a 400 when %s", (_n, messages) => {
    expectError(() => validate(chat({ messages, response_format: { type: "json_object" } })), 400, JSON_WORD);
  });

  it("text is accepted without conditions", () => {
    expect(validate(chat({ response_format: { type: "text" } })).upstreamBody.response_format).toEqual({ type: "text" });
  });
});

describe("tools", () => {
  it("accepts up to 128 and rejects 129 with 422", () => {
    const tools = (n: number) => Array.from({ length: n }, (_, i) => fn(`f${i}`));
    expect(validate(chat({ tools: tools(128) })).tools).toHaveLength(128);
    const err = expectError(() => validate(chat({ tools: tools(129) })), 422, "Invalid tools value, at most 128 tools are allowed");
    expect(err.param).toBe("tools");
  });

  it("normalizes tools: unset fields dropped, parameters kept as given", () => {
    const parameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
    const v = validate(chat({ tools: [{ type: "function", function: { name: "get_weather", description: "Weather", parameters, strict: null }, extra: 1 }] }));
    expect(v.tools).toEqual([{ type: "function", function: { name: "get_weather", description: "Weather", parameters } }]);
    expect(v.upstreamBody.tools).toEqual(v.tools);
  });

  it("an empty tools list counts as no tools", () => {
    const v = validate(chat({ tools: [], tool_choice: "auto" }));
    expect(v.tools).toBeUndefined();
    expect(v.upstreamBody).not.toHaveProperty("tools");
    expect(v.upstreamBody).not.toHaveProperty("tool_choice");
  });

  it("parameters must describe an object", () => {
    expectError(
      () => validate(chat({ tools: [fn("f", { parameters: { type: "string" } })] })),
      400,
      "Invalid schema for function 'f': the parameters schema must have type 'object'",
    );
  });
});

describe("tool_choice", () => {
  const tools = [fn("get_weather"), fn("get_time")];

  it.each(["none", "auto", "required", { type: "function", function: { name: "get_time" } }])("accepts %j with tools", (tool_choice) => {
    expect(validate(chat({ tools, tool_choice })).upstreamBody.tool_choice).toEqual(tool_choice);
  });

  it("a named function must be among the tools", () => {
    const err = expectError(() => validate(chat({ tools, tool_choice: { type: "function", function: { name: "get_news" } } })), 400, "tool_choice: function 'get_news' is not among the tools");
    expect(err.param).toBe("tool_choice.function.name");
  });

  it("required and named choices need tools", () => {
    expectError(() => validate(chat({ tool_choice: "required" })), 400, "tool_choice: 'required' requires tools to be specified");
    expectError(() => validate(chat({ tool_choice: { type: "function", function: { name: "f" } } })), 400, "tool_choice: a named function requires tools to be specified");
  });

  it("none and auto without tools are accepted and not forwarded", () => {
    for (const tool_choice of ["none", "auto"]) expect(validate(chat({ tool_choice })).upstreamBody).not.toHaveProperty("tool_choice");
  });
});

describe("strict tools", () => {
  const closed = {
    type: "object",
    properties: {
      city: { type: "string" },
      unit: { type: "string", enum: ["c", "f"] },
      when: { type: "object", properties: { day: { type: "string" } }, required: ["day"], additionalProperties: false },
      stops: { type: "array", items: { type: "object", properties: { name: { type: "string" } }, required: ["name"], additionalProperties: false } },
    },
    required: ["city", "unit", "when", "stops"],
    additionalProperties: false,
  };
  const strictTool = (parameters: unknown) => fn("plan_trip", { strict: true, parameters });

  it("needs /beta", () => {
    const err = expectError(() => validate(chat({ tools: [fn("a"), strictTool(closed)] })), 400, "tools[1].function.strict: strict mode is only available on the beta API (base URL /beta)");
    expect(err.param).toBe("tools[1].function.strict");
  });

  it("accepts a closed schema under /beta and forwards strict", () => {
    const v = validate(chat({ tools: [strictTool(closed)] }), true);
    expect(v.tools?.[0]?.function.strict).toBe(true);
    expect((v.upstreamBody.tools as { function: { strict?: boolean } }[])[0]?.function.strict).toBe(true);
  });

  it("strict: false is fine outside /beta", () => {
    expect(validate(chat({ tools: [fn("a", { strict: false })] })).tools?.[0]?.function.strict).toBe(false);
  });

  it("accepts a strict function without parameters", () => {
    expect(validate(chat({ tools: [fn("ping", { strict: true })] }), true).tools).toHaveLength(1);
  });

  const clone = () => structuredClone(closed) as Record<string, any>;
  it.each<[string, (s: Record<string, any>) => void, string]>([
    ["top level open", (s) => delete s.additionalProperties, "the object at '#' must set 'additionalProperties' to false"],
    ["top level additionalProperties true", (s) => (s.additionalProperties = true), "the object at '#' must set 'additionalProperties' to false"],
    ["a property not required", (s) => (s.required = ["city", "when", "stops"]), "the object at '#' must list every property in 'required' (missing: 'unit')"],
    ["no required list", (s) => delete s.required, "the object at '#' must list every property in 'required' (missing: 'city', 'unit', 'when', 'stops')"],
    ["nested object open", (s) => delete s.properties.when.additionalProperties, "the object at '#/properties/when' must set 'additionalProperties' to false"],
    ["nested object not required", (s) => (s.properties.when.required = []), "the object at '#/properties/when' must list every property in 'required' (missing: 'day')"],
    ["array item open", (s) => delete s.properties.stops.items.additionalProperties, "the object at '#/properties/stops/items' must set 'additionalProperties' to false"],
    [
      "anyOf branch open",
      (s) => (s.properties.city = { anyOf: [{ type: "string" }, { type: "object", properties: { id: { type: "string" } }, required: ["id"] }] }),
      "the object at '#/properties/city/anyOf/1' must set 'additionalProperties' to false",
    ],
    [
      "$defs entry open",
      (s) => (s.$defs = { place: { type: "object", properties: { id: { type: "string" } }, required: ["id"] } }),
      "the object at '#/$defs/place' must set 'additionalProperties' to false",
    ],
  ])("rejects %s, naming the function", (_n, mutate, violation) => {
    const schema = clone();
    mutate(schema);
    const err = expectError(() => validate(chat({ tools: [strictTool(schema)] }), true), 400, `Invalid schema for function 'plan_trip': in strict mode, ${violation}`);
    expect(err.param).toBe("tools[0].function.parameters");
  });

  it("does not check non-strict functions under /beta", () => {
    expect(validate(chat({ tools: [fn("loose", { parameters: { type: "object", properties: { a: { type: "string" } } } })] }), true).tools).toHaveLength(1);
  });
});

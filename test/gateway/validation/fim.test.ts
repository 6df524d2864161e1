// POST /beta/completions (FIM).
import { describe, expect, it } from "vitest";
import { validateFimRequest } from "../../../workers/gateway/src/validation";
import { expectError, models } from "./fixtures";

const validate = (body: unknown) => validateFimRequest(body, { models });
const fim = (extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", prompt: "def fib(a):", ...extra });
const D = "Failed to deserialize the JSON body into the target type: ";
const STREAM_OPTIONS = { include_usage: true, continuous_usage_stats: true };

describe("FIM body shape (400)", () => {
  it.each<[string, unknown, string, string | null]>([
    ["array body", [], `${D}the request body must be a JSON object`, null],
    ["missing model", { prompt: "x" }, `${D}missing field \`model\``, "model"],
    ["missing prompt", { model: "deepseek-chat" }, `${D}missing field \`prompt\``, "prompt"],
    ["prompt as a list", fim({ prompt: ["a", "b"] }), `${D}prompt: invalid type: a sequence, expected a string`, "prompt"],
    ["prompt null", fim({ prompt: null }), `${D}prompt: invalid type: null, expected a string`, "prompt"],
    ["suffix a number", fim({ suffix: 1 }), `${D}suffix: invalid type: integer \`1\`, expected a string`, "suffix"],
    ["echo a string", fim({ echo: "yes" }), `${D}echo: invalid type: string "yes", expected a boolean`, "echo"],
    ["logprobs a boolean", fim({ logprobs: true }), `${D}logprobs: invalid type: boolean \`true\`, expected a number`, "logprobs"],
    ["logprobs fractional", fim({ logprobs: 1.5 }), `${D}logprobs: invalid type: floating point \`1.5\`, expected an integer`, "logprobs"],
    ["max_tokens a string", fim({ max_tokens: "10" }), `${D}max_tokens: invalid type: string "10", expected a number`, "max_tokens"],
    ["temperature a string", fim({ temperature: "hot" }), `${D}temperature: invalid type: string "hot", expected a number`, "temperature"],
    ["stop a number", fim({ stop: 1 }), `${D}stop: invalid type: integer \`1\`, expected a string or an array`, "stop"],
    ["stream a number", fim({ stream: 1 }), `${D}stream: invalid type: integer \`1\`, expected a boolean`, "stream"],
  ])("%s", (_n, body, message, param) => {
    expect(expectError(() => validate(body), 400, message).param).toBe(param);
  });
});

describe("FIM model", () => {
  it("unknown model", () => {
    expectError(() => validate(fim({ model: "deepseek-coder" })), 400, "Model Not Exist");
  });

  it("deepseek-reasoner does not support FIM", () => {
    expect(expectError(() => validate(fim({ model: "deepseek-reasoner" })), 400, "FIM completion is not supported by this model (deepseek-reasoner)").param).toBe("model");
  });
});

describe("FIM ranges", () => {
  it.each([0, -1, 4097, 8192])("max_tokens %d is a 400 with [1, 4096]", (max_tokens) => {
    expect(expectError(() => validate(fim({ max_tokens })), 400, "Invalid max_tokens value, the valid range of max_tokens is [1, 4096]").param).toBe("max_tokens");
  });

  it.each([1, 4096])("max_tokens %d is accepted", (max_tokens) => {
    expect(validate(fim({ max_tokens })).maxTokens).toBe(max_tokens);
  });

  it("max_tokens defaults to the model default, within the FIM cap", () => {
    expect(validate(fim()).maxTokens).toBe(4096);
    const big = new Map([...models].map(([id, m]) => [id, { ...m, defaultMaxTokens: 8192 }]));
    expect(validateFimRequest(fim(), { models: big }).maxTokens).toBe(4096);
  });

  it.each<[string, number, string]>([
    ["logprobs", 21, "Invalid logprobs value, the valid range of logprobs is [0, 20]"],
    ["logprobs", -1, "Invalid logprobs value, the valid range of logprobs is [0, 20]"],
    ["temperature", 2.5, "Invalid temperature value, the valid range of temperature is [0, 2]"],
    ["top_p", 1.5, "Invalid top_p value, the valid range of top_p is [0, 1]"],
    ["frequency_penalty", -3, "Invalid frequency_penalty value, the valid range of frequency_penalty is [-2, 2]"],
    ["presence_penalty", 2.1, "Invalid presence_penalty value, the valid range of presence_penalty is [-2, 2]"],
  ])("%s %d is a 422", (field, value, message) => {
    expect(expectError(() => validate(fim({ [field]: value })), 422, message).param).toBe(field);
  });

  it("stop allows 16 sequences, not 17", () => {
    expect(validate(fim({ stop: Array(16).fill("\n") })).upstreamBody.stop).toHaveLength(16);
    expectError(() => validate(fim({ stop: Array(17).fill("\n") })), 422, "Invalid stop value, at most 16 stop sequences are allowed");
  });
});

describe("FIM result", () => {
  it("a minimal request", () => {
    const v = validate(fim());
    expect(v).toStrictEqual({
      model: models.get("deepseek-chat"),
      prompt: "def fib(a):",
      suffix: null,
      maxTokens: 4096,
      stream: false,
      includeUsage: false,
      echo: false,
      logprobs: null,
      upstreamBody: { model: "deepseek-chat", prompt: "def fib(a):", max_tokens: 4096, stream: true, stream_options: STREAM_OPTIONS },
    });
  });

  it("a full request: validated fields only", () => {
    const v = validate(
      fim({
        suffix: "    return fib(a-1) + fib(a-2)",
        max_tokens: 128,
        echo: true,
        logprobs: 0,
        temperature: 0,
        top_p: 0.5,
        frequency_penalty: 0.5,
        presence_penalty: -0.5,
        stop: ["\n\n"],
        stream: true,
        stream_options: { include_usage: true },
        best_of: 3,
        n: 2,
      }),
    );
    expect(v).toMatchObject({ suffix: "    return fib(a-1) + fib(a-2)", maxTokens: 128, echo: true, logprobs: 0, stream: true, includeUsage: true });
    expect(v.upstreamBody).toStrictEqual({
      model: "deepseek-chat",
      prompt: "def fib(a):",
      suffix: "    return fib(a-1) + fib(a-2)",
      max_tokens: 128,
      echo: true,
      logprobs: 0,
      temperature: 0,
      top_p: 0.5,
      frequency_penalty: 0.5,
      presence_penalty: -0.5,
      stop: ["\n\n"],
      stream: true,
      stream_options: STREAM_OPTIONS,
    });
  });

  it("null optional fields count as unset", () => {
    const v = validate(fim({ suffix: null, echo: null, logprobs: null, max_tokens: null, stop: null, stream: null, stream_options: null }));
    expect(v.upstreamBody).toStrictEqual({ model: "deepseek-chat", prompt: "def fib(a):", max_tokens: 4096, stream: true, stream_options: STREAM_OPTIONS });
  });

  it("include_usage without stream has no effect", () => {
    expect(validate(fim({ stream_options: { include_usage: true } })).includeUsage).toBe(false);
  });

  it("an empty prompt is allowed (suffix-only infill)", () => {
    expect(validate(fim({ prompt: "", suffix: "}" })).prompt).toBe("");
  });
});

// What generic OpenAI-compatible clients read and send: prompt_tokens_details.cached_tokens,
// max_completion_tokens, and chunks that carry only the contract's fields.
import { describe, expect, it } from "vitest";
import { validateChatRequest } from "../../../workers/gateway/src/validation";
import { post, readSse, readyClient } from "../chat/helpers";
import { expectError, models } from "../validation/fixtures";

const validate = (body: unknown) => validateChatRequest(body, { beta: false, models });
const ask = (content: string, extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [{ role: "user", content }], ...extra });

describe("max_completion_tokens", () => {
  it("means max_tokens: it sets the completion budget the worker is given", () => {
    const v = validate(ask("hi", { max_completion_tokens: 123 }));
    expect(v.maxTokens).toBe(123);
    expect(v.upstreamBody.max_tokens).toBe(123);
    expect(v.upstreamBody).not.toHaveProperty("max_completion_tokens");
    expect(validate(ask("hi", { max_tokens: 50, max_completion_tokens: 50 })).maxTokens).toBe(50);
  });

  it("out of range is the contract's max_tokens error; both given and different is a 400 naming both", () => {
    expectError(() => validate(ask("hi", { max_completion_tokens: 9000 })), 400, "Invalid max_tokens value, the valid range of max_tokens is [1, 8192]");
    const err = expectError(() => validate(ask("hi", { max_tokens: 10, max_completion_tokens: 20 })), 400, /max_tokens \(10\) and max_completion_tokens \(20\) are both set, to different values/);
    expect(err.param).toBe("max_completion_tokens");
  });

  it("over HTTP: the 400 comes in the API's error format and nothing reaches the worker", async () => {
    const { key } = await readyClient();
    const res = await post("/chat/completions", key, ask("hi", { max_tokens: 10, max_completion_tokens: 20 }));
    expect(res.status).toBe(400);
    const body = await res.json<any>();
    expect(body.error).toMatchObject({ type: "invalid_request_error", param: "max_completion_tokens", message: expect.stringContaining("max_completion_tokens") });
    const ok = await (await post("/chat/completions", key, ask("hi [[words:20]]", { max_completion_tokens: 3 }))).json<any>();
    expect(ok.choices[0].finish_reason).toBe("length");
  });
});

describe("usage.prompt_tokens_details.cached_tokens", () => {
  it("equals prompt_cache_hit_tokens, in bodies and on the stream's usage chunk", async () => {
    const { client } = await readyClient();
    const prefix = `${crypto.randomUUID()} ${"a long shared system prompt ".repeat(40)}`;
    const first = await client.chat.completions.create(ask(`${prefix} first`) as any);
    expect((first.usage as any).prompt_tokens_details).toEqual({ cached_tokens: 0 });
    const second: any = await client.chat.completions.create(ask(`${prefix} second`) as any);
    expect(second.usage.prompt_cache_hit_tokens).toBeGreaterThan(0);
    expect(second.usage.prompt_tokens_details).toEqual({ cached_tokens: second.usage.prompt_cache_hit_tokens });

    const stream = await client.chat.completions.create({ ...ask(`${prefix} third`), stream: true, stream_options: { include_usage: true } } as any);
    let usage: any = null;
    for await (const chunk of stream as any) if (chunk.usage) usage = chunk.usage;
    expect(usage.prompt_tokens_details.cached_tokens).toBe(usage.prompt_cache_hit_tokens);
    expect(usage.prompt_cache_hit_tokens).toBeGreaterThan(0);
  });
});

describe("client chunks", () => {
  const CHUNK_KEYS = ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"];
  const CHOICE_KEYS = ["index", "delta", "logprobs", "finish_reason"];

  it("carry only the contract's fields: the engine's stop_reason (and anything else it adds) stays out", async () => {
    const { key } = await readyClient();
    // The fake worker, like vLLM, says which stop string matched in choices[0].stop_reason.
    const res = await post("/chat/completions", key, ask("hi [[words:6]]", { stream: true, stop: ["fake"] }));
    const { events, done, raw } = await readSse(res);
    expect(done).toBe(true);
    expect(raw).not.toContain("stop_reason");
    for (const event of events) {
      for (const k of Object.keys(event)) expect(CHUNK_KEYS).toContain(k);
      for (const choice of event.choices) expect(Object.keys(choice).sort()).toEqual([...CHOICE_KEYS].sort());
    }
    expect(events.at(-1).choices[0].finish_reason).toBe("stop");
  });

  it("FIM chunks too", async () => {
    const { key } = await readyClient();
    const fim = await post("/beta/completions", key, { model: "deepseek-chat", prompt: "def f(", suffix: "return x", stream: true, max_tokens: 4 });
    const { events } = await readSse(fim);
    expect(events.length).toBeGreaterThan(0);
    for (const event of events) for (const choice of event.choices) expect(Object.keys(choice).sort()).toEqual(["finish_reason", "index", "logprobs", "text"]);
  });
});

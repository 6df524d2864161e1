// The official `openai` Node SDK against the running platform (real GPU workers on CPU with the
// embedded random-weights model, gateway under wrangler dev): every surface a client uses.
// The model's text is random; the tests pin the shapes, the token accounting and the money.
import { beforeAll, describe, expect, it } from "vitest";
import { expectedCost, isOffPeak, longText, requestIdOf, signUp, usageRow, type TestAccount } from "./support";

let acct: TestAccount;
beforeAll(async () => {
  acct = await signUp();
});

describe("OpenAI Node SDK, deepseek-chat", () => {
  it("non-streaming chat: a chat.completion with DeepSeek usage, settled to the usage row", async () => {
    const { data, requestId } = await requestIdOf(
      acct.client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: "Say hello." }], max_tokens: 8 }),
    );
    expect(data.object).toBe("chat.completion");
    expect(data.model).toBe("deepseek-chat");
    expect(data.choices[0]!.message.role).toBe("assistant");
    expect(typeof data.choices[0]!.message.content).toBe("string");
    expect(data.choices[0]!.finish_reason).toMatch(/^(length|stop)$/);
    const usage = data.usage as any;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(8);
    expect(usage.prompt_tokens).toBe(usage.prompt_cache_hit_tokens + usage.prompt_cache_miss_tokens);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);

    const row = await usageRow(requestId);
    expect(row).toMatchObject({ account_id: acct.accountId, model: "deepseek-chat", status: "ok" });
    expect([row.cache_hit_tokens, row.cache_miss_tokens, row.completion_tokens]).toEqual([
      usage.prompt_cache_hit_tokens,
      usage.prompt_cache_miss_tokens,
      usage.completion_tokens,
    ]);
  });

  it("streaming chat: role first, same id on every chunk, usage on the finish chunk only, [DONE]", async () => {
    const stream = await acct.client.chat.completions.create({
      model: "deepseek-chat",
      messages: [{ role: "user", content: "Count to ten." }],
      max_tokens: 12,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: any[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThan(1);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    const last = chunks.at(-1);
    expect(last.choices[0].finish_reason).toBe("length");
    expect(last.usage.completion_tokens).toBe(12);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(text.length).toBeGreaterThan(0);
  });

  it("logprobs: one entry per completion token with top_logprobs", async () => {
    const res = await acct.client.chat.completions.create({
      model: "deepseek-chat",
      messages: [{ role: "user", content: "One word." }],
      max_tokens: 6,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = res.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(res.usage!.completion_tokens);
    for (const entry of content) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(Array.isArray(entry.bytes)).toBe(true);
      expect(entry.top_logprobs).toHaveLength(3);
      const tops = entry.top_logprobs.map((t) => t.logprob);
      expect([...tops].sort((a, b) => b - a)).toEqual(tops);
    }
    expect(content.map((e) => e.token).join("")).toBe(res.choices[0]!.message.content);
  });

  it("FIM under /beta: text_completion with the suffix honoured as a separate field", async () => {
    const res = await acct.beta.completions.create({
      model: "deepseek-chat",
      prompt: "def add(a, b):\n    ",
      suffix: "\n    return c\n",
      max_tokens: 8,
      logprobs: 2,
    });
    expect(res.object).toBe("text_completion");
    expect(typeof res.choices[0]!.text).toBe("string");
    expect(res.choices[0]!.finish_reason).toMatch(/^(length|stop)$/);
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    const lp = res.choices[0]!.logprobs!;
    expect(lp.tokens!.length).toBe(res.usage!.completion_tokens);
    expect(lp.token_logprobs!.length).toBe(lp.tokens!.length);
    expect(lp.tokens!.join("")).toBe(res.choices[0]!.text);
  });

  it("FIM streaming under /beta ends with [DONE] and usage", async () => {
    const stream = await acct.beta.completions.create({
      model: "deepseek-chat",
      prompt: "const x = ",
      suffix: ";\n",
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: any[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const withUsage = chunks.filter((c) => c.usage);
    expect(withUsage).toHaveLength(1);
    expect(withUsage[0].usage.completion_tokens).toBe(5);
  });

  it("chat prefix completion under /beta continues the assistant's text", async () => {
    const res = await acct.beta.chat.completions.create({
      model: "deepseek-chat",
      messages: [
        { role: "user", content: "Write a Python hello world." },
        { role: "assistant", content: "```python\nprint(", prefix: true } as any,
      ],
      max_tokens: 6,
    });
    expect(res.choices[0]!.message.role).toBe("assistant");
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    // The prefix is in the prompt (more prompt tokens than the same chat without it).
    const plain = await acct.client.chat.completions.create({
      model: "deepseek-chat",
      messages: [{ role: "user", content: "Write a Python hello world." }],
      max_tokens: 1,
    });
    expect(res.usage!.prompt_tokens).toBeGreaterThan(plain.usage!.prompt_tokens);
  });

  it("prefix completion outside /beta is refused with the contract's 400", async () => {
    const err = await acct.client.chat.completions
      .create({ model: "deepseek-chat", messages: [{ role: "user", content: "x" }, { role: "assistant", content: "y", prefix: true } as any], max_tokens: 2 })
      .catch((e) => e);
    expect(err.status).toBe(400);
  });
});

describe("OpenAI Node SDK, deepseek-reasoner", () => {
  // The embedded model has random weights: it never closes its chain of thought, so a reasoner
  // request would think for the whole 32768-token budget. The stream is read until
  // reasoning_content has arrived, then the client hangs up; it pays only for what it got.
  it("streams reasoning_content before any content; a client that hangs up pays only for what was generated", async () => {
    const before = await acct.balanceMicros();
    const { data: stream, response } = await acct.client.chat.completions
      .create({ model: "deepseek-reasoner", messages: [{ role: "user", content: "Why is the sky blue?" }], max_tokens: 16, stream: true })
      .withResponse();
    const requestId = response.headers.get("x-ds-trace-id")!;
    let reasoning = "";
    let chunks = 0;
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as any;
      if (chunks === 0) expect(delta.role).toBe("assistant");
      expect(delta?.content ?? "").toBe("");
      reasoning += delta?.reasoning_content ?? "";
      if (++chunks >= 10 && reasoning.length > 0) break; // hangs up
    }
    expect(reasoning.length).toBeGreaterThan(0);

    const row = await usageRow(requestId);
    expect(row.model).toBe("deepseek-reasoner");
    expect(row.status).toBe("aborted");
    expect(row.reasoning_tokens).toBeGreaterThanOrEqual(9);
    expect(row.reasoning_tokens).toBe(row.completion_tokens);
    // Far below the 32768-token budget: generation stopped when the client left.
    expect(row.completion_tokens).toBeLessThan(2000);
    expect(row.price_tier).toBe(isOffPeak(row.completed_at) ? "off_peak" : "standard");
    expect(row.cost_micros).toBe(
      expectedCost("deepseek-reasoner", { hit: row.cache_hit_tokens, miss: row.cache_miss_tokens, output: row.completion_tokens }, row.price_tier),
    );
    await expect.poll(() => acct.balanceMicros(), { timeout: 15_000 }).toBe(before - row.cost_micros);
  });

  it("a non-streaming reasoner request is answered with reasoning_content (prefix completion past the thinking)", async () => {
    // With the chain of thought given as the prefix's reasoning_content, the model writes only
    // the answer, bounded by max_tokens.
    const res = await acct.beta.chat.completions.create({
      model: "deepseek-reasoner",
      messages: [
        { role: "user", content: "2+2?" },
        { role: "assistant", content: "The answer is", prefix: true, reasoning_content: "Two plus two is four." } as any,
      ],
      max_tokens: 4,
    });
    expect(res.choices[0]!.finish_reason).toBe("length");
    expect(res.usage!.completion_tokens).toBe(4);
  });
});

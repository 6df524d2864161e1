// The official openai SDK against the gateway and the deterministic fake worker.
import { describe, expect, it } from "vitest";
import { fakeRequests, readyClient } from "./helpers";

describe("chat completions through the openai SDK", () => {
  it("returns a non-streaming completion with DeepSeek usage", async () => {
    const { client } = await readyClient();
    const res = await client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: "Hi [[words:4]]" }] });
    expect(res.object).toBe("chat.completion");
    expect(res.choices[0]!.message.content).toBe("Hello from the fake");
    expect(res.choices[0]!.finish_reason).toBe("stop");
    const usage = res.usage as any;
    expect(usage.completion_tokens).toBe(4);
    expect(usage.prompt_tokens).toBe(usage.prompt_cache_hit_tokens + usage.prompt_cache_miss_tokens);
    expect(usage.total_tokens).toBe(usage.prompt_tokens + 4);
    expect(usage.completion_tokens_details).toEqual({ reasoning_tokens: 0 });
  });

  it("streams content chunk by chunk with usage only on the last chunk", async () => {
    const { client } = await readyClient();
    const stream = await client.chat.completions.create({ model: "deepseek-chat", stream: true, messages: [{ role: "user", content: "Hi [[words:3]]" }] });
    const chunks: any[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("")).toBe("Hello from the");
    const last = chunks.at(-1);
    expect(last.choices[0].finish_reason).toBe("stop");
    expect(last.usage.completion_tokens).toBe(3);
    expect(chunks.slice(0, -1).every((c) => !("usage" in c))).toBe(true);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(new Set(chunks.map((c) => c.created)).size).toBe(1);
  });

  it("with include_usage, every other chunk carries usage: null", async () => {
    const { client } = await readyClient();
    const stream = await client.chat.completions.create({
      model: "deepseek-chat",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "Hi [[words:3]]" }],
    });
    const chunks: any[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect(chunks.at(-1).usage.completion_tokens).toBe(3);
  });

  it("streams the reasoner's reasoning_content before content", async () => {
    const { client } = await readyClient();
    const stream = await client.chat.completions.create({ model: "deepseek-reasoner", stream: true, messages: [{ role: "user", content: "Why? [[words:2]]" }] });
    const deltas: any[] = [];
    for await (const chunk of stream) deltas.push(chunk.choices[0]?.delta ?? {});
    const reasoning = deltas.map((d) => d.reasoning_content ?? "").join("");
    const content = deltas.map((d) => d.content ?? "").join("");
    expect(reasoning).toBe("Let me think.");
    expect(content).toBe("Hello from");
    const firstContent = deltas.findIndex((d) => d.content);
    const lastReasoning = deltas.map((d) => !!d.reasoning_content).lastIndexOf(true);
    expect(lastReasoning).toBeLessThan(firstContent);

    const full = await client.chat.completions.create({ model: "deepseek-reasoner", messages: [{ role: "user", content: "Why? [[words:2]]" }] });
    expect((full.choices[0]!.message as any).reasoning_content).toBe("Let me think.");
    expect((full.usage as any).completion_tokens_details.reasoning_tokens).toBe(4);
  });

  it("streams tool_calls deltas and assembles them when not streaming", async () => {
    const { client } = await readyClient();
    const tools = [{ type: "function" as const, function: { name: "get_weather", description: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
    const stream = await client.chat.completions.create({ model: "deepseek-chat", stream: true, tools, messages: [{ role: "user", content: "Weather? [[tool_call]]" }] });
    let args = "";
    let name = "";
    let finish = "";
    for await (const chunk of stream) {
      for (const call of chunk.choices[0]?.delta?.tool_calls ?? []) {
        expect(call.index).toBe(0);
        name += call.function?.name ?? "";
        args += call.function?.arguments ?? "";
      }
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect({ name, args: JSON.parse(args), finish }).toEqual({ name: "get_weather", args: { city: "Paris" }, finish: "tool_calls" });

    const full = await client.chat.completions.create({ model: "deepseek-chat", tools, messages: [{ role: "user", content: "Weather? [[tool_call]]" }] });
    expect(full.choices[0]!.finish_reason).toBe("tool_calls");
    expect(full.choices[0]!.message.tool_calls).toEqual([{ id: "call_fake_0", type: "function", function: { name: "get_weather", arguments: '{"city": "Paris"}' } }]);
  });

  it("passes logprobs through, streaming and not", async () => {
    const { client } = await readyClient();
    const full = await client.chat.completions.create({ model: "deepseek-chat", logprobs: true, top_logprobs: 2, messages: [{ role: "user", content: "Hi [[words:2]]" }] });
    const content = full.choices[0]!.logprobs!.content!;
    expect(content.map((t) => t.token)).toEqual(["Hello", " from"]);
    expect(content[0]!.top_logprobs).toHaveLength(2);
    expect(content[0]!.bytes).toEqual([72, 101, 108, 108, 111]);

    const stream = await client.chat.completions.create({ model: "deepseek-chat", stream: true, logprobs: true, top_logprobs: 1, messages: [{ role: "user", content: "Hi [[words:2]]" }] });
    const tokens: string[] = [];
    for await (const chunk of stream) for (const t of chunk.choices[0]?.logprobs?.content ?? []) tokens.push(t.token);
    expect(tokens).toEqual(["Hello", " from"]);
  });

  it("keeps waiting clients alive without breaking the SDK", async () => {
    const { client } = await readyClient();
    const full = await client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: "Hi [[delay_first_byte:1000]] [[words:2]]" }] });
    expect(full.choices[0]!.message.content).toBe("Hello from");
    const stream = await client.chat.completions.create({ model: "deepseek-chat", stream: true, messages: [{ role: "user", content: "Hi [[delay_first_byte:1000]] [[words:2]]" }] });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe("Hello from");
  });

  it("forwards with the worker secret, request id, cache namespace and continuous usage", async () => {
    const { client } = await readyClient();
    const marker = `marker-${crypto.randomUUID()}`;
    const res = await client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: `${marker} [[words:1]]` }] }).withResponse();
    const seen = (await fakeRequests()).find((r) => JSON.stringify(r.body).includes(marker));
    expect(seen.headers["x-request-id"]).toBe(res.response.headers.get("x-ds-trace-id"));
    expect(seen.headers["x-cache-namespace"]).toMatch(/.+/);
    expect(seen.body.stream).toBe(true);
    expect(seen.body.stream_options).toEqual({ include_usage: true, continuous_usage_stats: true });
  });

  it("reuses its connection to the worker: the answer is read to its end before the next request", async () => {
    const { client } = await readyClient();
    const marker = `reuse-${crypto.randomUUID()}`;
    for (let i = 0; i < 6; i++) {
      await client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: `${marker} ${i} [[words:2]]` }] });
      // Draining the worker's answer happens just after the client's answer is complete.
      await new Promise((r) => setTimeout(r, 20));
    }
    const seen = (await fakeRequests()).filter((r) => JSON.stringify(r.body).includes(marker));
    expect(seen).toHaveLength(6);
    expect(new Set(seen.map((r) => r.connection)).size).toBeLessThan(6);
  });
});

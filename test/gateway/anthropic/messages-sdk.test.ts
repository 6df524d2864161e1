// The official @anthropic-ai/sdk against /anthropic and the deterministic fake worker.
import { SELF } from "cloudflare:test";
import Anthropic from "@anthropic-ai/sdk";
import { describe, expect, it } from "vitest";
import { fakeRequests, openaiClient } from "../chat/helpers";
import { readyAccount } from "../setup/fixtures";
import { anthropicClient, nonce, parseAnthropicSse, readyAnthropic, usageRow } from "./helpers";

const upstreamBodyWith = async (marker: string) => (await fakeRequests()).find((r) => JSON.stringify(r.body.messages).includes(marker))!.body;

const WEATHER_TOOL = {
  name: "get_weather",
  description: "Current weather of a city",
  input_schema: { type: "object" as const, properties: { city: { type: "string" } }, required: ["city"] },
};

describe("Anthropic Messages through the official SDK", () => {
  it("answers a non-streaming request; unknown model names run on deepseek-chat", async () => {
    const { client } = await readyAnthropic();
    const message = await client.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 1024,
      system: "You are terse.",
      messages: [{ role: "user", content: "Hi [[words:4]]" }],
    });
    expect(message).toMatchObject({
      type: "message",
      role: "assistant",
      model: "deepseek-chat",
      content: [{ type: "text", text: "Hello from the fake" }],
      stop_reason: "end_turn",
      stop_sequence: null,
    });
    expect(message.id).toMatch(/^msg_[0-9a-f]{32}$/);
    expect(message.usage).toMatchObject({ output_tokens: 4, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(message.usage.input_tokens).toBeGreaterThan(0);
  });

  it("reports which stop sequence ended the answer, streaming and not", async () => {
    const { client } = await readyAnthropic();
    const request = { model: "deepseek-chat", max_tokens: 64, stop_sequences: ["zzz", "fake"], messages: [{ role: "user" as const, content: "Hi [[words:6]]" }] };
    const message = await client.messages.create(request);
    expect(message).toMatchObject({ content: [{ type: "text", text: "Hello from the" }], stop_reason: "stop_sequence", stop_sequence: "fake" });
    const final = await client.messages.stream(request).finalMessage();
    expect(final).toMatchObject({ stop_reason: "stop_sequence", stop_sequence: "fake" });
  });

  it("streams text with the Anthropic event sequence", async () => {
    const { client } = await readyAnthropic();
    const stream = client.messages.stream({ model: "deepseek-chat", max_tokens: 3, messages: [{ role: "user", content: "Hi [[words:3]]" }] });
    const types: string[] = [];
    const texts: string[] = [];
    stream.on("streamEvent", (event) => types.push(event.type));
    stream.on("text", (delta) => texts.push(delta));
    const message = await stream.finalMessage();
    expect(types).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(texts).toEqual(["Hello", " from", " the"]);
    expect(message.content).toEqual([{ type: "text", text: "Hello from the" }]);
    expect(message.stop_reason).toBe("max_tokens");
    expect(message.usage.output_tokens).toBe(3);
  });

  it("accepts the key as x-api-key and as a Bearer token", async () => {
    const { key } = await readyAnthropic();
    for (const auth of ["x-api-key", "bearer"] as const) {
      const message = await anthropicClient(key, auth).messages.create({ model: "deepseek-chat", max_tokens: 10, messages: [{ role: "user", content: "[[words:2]]" }] });
      expect(message.content).toEqual([{ type: "text", text: "Hello from" }]);
    }
  });

  it("round-trips a tool call: tool_use out, tool_result back in", async () => {
    const { client } = await readyAnthropic();
    const marker = nonce();
    const question: Anthropic.MessageParam = { role: "user", content: `Weather in Paris? ${marker} [[tool_call]]` };
    const first = await client.messages.create({ model: "deepseek-chat", max_tokens: 100, tools: [WEATHER_TOOL], tool_choice: { type: "any" }, messages: [question] });
    expect(first.stop_reason).toBe("tool_use");
    expect(first.content).toEqual([{ type: "tool_use", id: "call_fake_0", name: "get_weather", input: { city: "Paris" } }]);
    expect((await upstreamBodyWith(marker)).tool_choice).toBe("required");

    const second = await client.messages.create({
      model: "deepseek-chat",
      max_tokens: 100,
      tools: [WEATHER_TOOL],
      messages: [
        question,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "call_fake_0", content: "18C and sunny" }, { type: "text", text: `So? ${marker}-2 [[words:3]]` }] },
      ],
    });
    expect(second.stop_reason).toBe("end_turn");
    expect(second.content).toEqual([{ type: "text", text: "Hello from the" }]);

    const upstream = await upstreamBodyWith(`${marker}-2`);
    expect(upstream.messages.slice(1)).toEqual([
      { role: "assistant", content: null, tool_calls: [{ id: "call_fake_0", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } }] },
      { role: "tool", tool_call_id: "call_fake_0", content: "18C and sunny" },
      { role: "user", content: `So? ${marker}-2 [[words:3]]` },
    ]);
    expect(upstream.tools).toEqual([{ type: "function", function: { name: "get_weather", description: WEATHER_TOOL.description, parameters: WEATHER_TOOL.input_schema } }]);
  });

  it("streams a tool call as input_json_delta", async () => {
    const { client } = await readyAnthropic();
    const stream = client.messages.stream({ model: "deepseek-chat", max_tokens: 100, tools: [WEATHER_TOOL], messages: [{ role: "user", content: "[[tool_call]]" }] });
    const fragments: string[] = [];
    stream.on("inputJson", (partial) => fragments.push(partial));
    const message = await stream.finalMessage();
    expect(fragments.join("")).toBe('{"city": "Paris"}');
    expect(message.content).toEqual([{ type: "tool_use", id: "call_fake_0", name: "get_weather", input: { city: "Paris" } }]);
    expect(message.stop_reason).toBe("tool_use");
  });

  it("thinking: enabled maps to the reasoner, which returns a thinking block before the text", async () => {
    const { client } = await readyAnthropic();
    const marker = nonce();
    const ask: Anthropic.MessageParam = { role: "user", content: `Why? ${marker} [[words:2]]` };
    const message = await client.messages.create({
      model: "claude-opus-4-1",
      max_tokens: 2048,
      thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [ask],
    });
    expect(message.model).toBe("deepseek-reasoner");
    expect(message.content).toEqual([
      { type: "thinking", thinking: "Let me think.", signature: "" },
      { type: "text", text: "Hello from" },
    ]);
    expect(message.usage.output_tokens).toBe(6);

    // The next turn sends the thinking block back, as clients do; the reasoner never sees it.
    const stream = client.messages.stream({
      model: "claude-opus-4-1",
      max_tokens: 2048,
      thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [ask, { role: "assistant", content: message.content }, { role: "user", content: `More ${marker}-2 [[words:1]]` }],
    });
    const thinking: string[] = [];
    stream.on("thinking", (delta) => thinking.push(delta));
    const next = await stream.finalMessage();
    expect(thinking.join("")).toBe("Let me think.");
    expect(next.content.map((b) => b.type)).toEqual(["thinking", "text"]);
    const upstream = await upstreamBodyWith(`${marker}-2`);
    expect(upstream.model).toBe("deepseek-reasoner");
    expect(upstream.messages[1]).toEqual({ role: "assistant", content: "Hello from" });
  });

  it("passes stop sequences and sampling to the worker; a trailing assistant message is continued", async () => {
    const { client } = await readyAnthropic();
    const marker = nonce();
    // temperature and top_k are not in this SDK version's types, but clients still send them.
    const message = await client.messages.create({
      model: "deepseek-chat",
      max_tokens: 100,
      stop_sequences: ["END"],
      temperature: 0.2,
      top_k: 5,
      metadata: { user_id: "u-1" },
      messages: [
        { role: "user", content: `JSON please ${marker} [[words:2]]` },
        { role: "assistant", content: "{" },
      ],
    } as Anthropic.MessageCreateParamsNonStreaming);
    expect(message.content).toEqual([{ type: "text", text: "Hello from" }]);
    const upstream = await upstreamBodyWith(marker);
    expect(upstream).toMatchObject({ stop: ["END"], temperature: 0.2 });
    expect(upstream.top_k).toBeUndefined();
    expect(upstream.messages.at(-1)).toEqual({ role: "assistant", content: "{", prefix: true });
  });
});

describe("a Claude Code-shaped request", () => {
  it("goes through: cache_control, anthropic-beta, ?beta=true, metadata, large max_tokens, tools with thinking", async () => {
    const { key } = await readyAnthropic();
    const marker = nonce();
    const body = {
      model: "claude-sonnet-4-5-20250929",
      max_tokens: 32000,
      stream: true,
      temperature: 1,
      metadata: { user_id: "user_abc_account__session_123" },
      thinking: { type: "enabled", budget_tokens: 31999 },
      system: [
        { type: "text", text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: "ephemeral" } },
        { type: "text", text: "Use the tools available to you.", cache_control: { type: "ephemeral" } },
      ],
      tools: [
        {
          name: "Bash",
          description: "Run a command",
          input_schema: { $schema: "http://json-schema.org/draft-07/schema#", type: "object", properties: { command: { type: "string" } }, required: ["command"], additionalProperties: false },
          cache_control: { type: "ephemeral" },
        },
      ],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "<system-reminder>context</system-reminder>" },
            { type: "text", text: `List files ${marker} [[tool_call]]`, cache_control: { type: "ephemeral" } },
          ],
        },
      ],
    };
    const res = await SELF.fetch(`https://gw.test/anthropic/v1/messages?beta=true`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${key}`,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const events = parseAnthropicSse(await res.text());
    expect(events.find((e) => e.event === "content_block_start")!.data.content_block).toEqual({ type: "tool_use", id: "call_fake_0", name: "Bash", input: {} });
    expect(events.at(-2)!.data.delta.stop_reason).toBe("tool_use");
    const upstream = await upstreamBodyWith(marker);
    // Tools need deepseek-chat: thinking does not switch an agent's request to the reasoner.
    expect(upstream).toMatchObject({ model: "deepseek-chat", max_tokens: 8192 });
    expect(upstream.messages[0]).toEqual({ role: "system", content: "You are Claude Code, Anthropic's official CLI for Claude.\nUse the tools available to you." });
  });
});

describe("usage and charges equal those of /chat/completions", () => {
  const SYSTEM = "You are a meticulous assistant who answers in exactly the requested number of words. ".repeat(6);
  const USER = "Tell me about the fake worker. [[words:5]]";

  it("non-streaming and streaming, including cache hits", async () => {
    const anthropicAccount = await readyAnthropic();
    const openaiAccount = await readyAccount();
    const openai = openaiClient(openaiAccount.key);

    for (const stream of [false, true]) {
      // Same prompt twice per account: the second request reads the first one's cache.
      for (let round = 0; round < 2; round++) {
        const a = anthropicAccount.client.messages.create({ model: "deepseek-chat", max_tokens: 50, system: SYSTEM, messages: [{ role: "user", content: USER }], stream: stream as false });
        const o = openai.chat.completions.create({
          model: "deepseek-chat",
          max_tokens: 50,
          messages: [
            { role: "system", content: SYSTEM },
            { role: "user", content: USER },
          ],
          stream: stream as false,
          ...(stream ? { stream_options: { include_usage: true } } : {}),
        });
        const [{ data: aData, response: aRes }, { data: oData, response: oRes }] = await Promise.all([a.withResponse(), o.withResponse()]);

        let anthropicUsage: Anthropic.Usage;
        let openaiUsage: any;
        if (stream) {
          let final: any = null;
          for await (const event of aData as any) {
            if (event.type === "message_start") final = { ...event.message.usage };
            if (event.type === "message_delta") final = { ...final, ...event.usage };
          }
          anthropicUsage = final;
          for await (const chunk of oData as any) if (chunk.usage) openaiUsage = chunk.usage;
        } else {
          anthropicUsage = (aData as Anthropic.Message).usage;
          openaiUsage = (oData as any).usage;
        }

        expect(anthropicUsage.input_tokens).toBe(openaiUsage.prompt_cache_miss_tokens);
        expect(anthropicUsage.cache_read_input_tokens).toBe(openaiUsage.prompt_cache_hit_tokens);
        expect(anthropicUsage.output_tokens).toBe(openaiUsage.completion_tokens);
        if (round === 1 && !stream) expect(anthropicUsage.cache_read_input_tokens).toBeGreaterThan(0);

        const aRow = await usageRow(aRes.headers.get("x-ds-trace-id")!);
        const oRow = await usageRow(oRes.headers.get("x-ds-trace-id")!);
        expect(aRow.endpoint).toBe("anthropic.messages");
        const billed = (row: any) => [row.model, row.cache_hit_tokens, row.cache_miss_tokens, row.completion_tokens, row.cost_micros, row.status];
        expect(billed(aRow)).toEqual(billed(oRow));
        expect(aRow.cost_micros).toBeGreaterThan(0);
      }
    }
  });
});

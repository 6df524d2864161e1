// Exact 64K context enforcement at the edge, FIM and chat prefix completion under /beta.
import { describe, expect, it } from "vitest";
import { countChatPromptTokens } from "../../../workers/gateway/src/tokenizer";
import { readyAccount } from "../setup/fixtures";
import { fakeRequests, openaiClient, post, setupFakeWorker } from "./helpers";

describe("context enforcement", () => {
  it("accepts prompt + max_tokens of exactly 65536 and refuses 65537 with both numbers", async () => {
    const { key } = await readyAccount(50_000_000);
    await setupFakeWorker();
    const content = `${"The quick brown fox jumps over the lazy dog. ".repeat(5800)}[[words:1]]`;
    const messages = [{ role: "user", content }];
    const promptTokens = countChatPromptTokens(messages);
    expect(promptTokens).toBeGreaterThan(65536 - 8192);
    expect(promptTokens).toBeLessThan(65536);

    const fits = await post("/chat/completions", key, { model: "deepseek-chat", messages, max_tokens: 65536 - promptTokens });
    expect(fits.status).toBe(200);

    const over = await post("/chat/completions", key, { model: "deepseek-chat", messages, max_tokens: 65537 - promptTokens });
    expect(over.status).toBe(400);
    expect((await over.json<any>()).error.message).toBe(
      `This model's maximum context length is 65536 tokens. However, you requested 65537 tokens (${promptTokens} in the messages, ${65537 - promptTokens} in the completion). Please reduce the length of the messages or completion.`,
    );
  });

  it("counts the default max_tokens (4096) when none is given", async () => {
    const { key } = await readyAccount(50_000_000);
    await setupFakeWorker();
    const messages = [{ role: "user", content: "The quick brown fox jumps over the lazy dog. ".repeat(6200) }];
    const promptTokens = countChatPromptTokens(messages);
    expect(promptTokens + 4096).toBeGreaterThan(65536);
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages });
    expect(res.status).toBe(400);
    expect((await res.json<any>()).error.message).toContain(`(${promptTokens} in the messages, 4096 in the completion)`);
  });
});

describe("FIM and prefix completion under /beta", () => {
  it("completes FIM through the openai SDK, streaming and not", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const client = openaiClient(key, "https://gw.test/beta");
    const res = await client.completions.create({ model: "deepseek-chat", prompt: "def add(a, b):\n [[words:3]]", suffix: "\n    return c", max_tokens: 16 });
    expect(res.object).toBe("text_completion");
    expect(res.choices[0]!.text).toBe("Hello from the");
    expect((res.usage as any).prompt_cache_miss_tokens).toBeGreaterThan(0);

    const stream = await client.completions.create({ model: "deepseek-chat", prompt: "x = [[words:2]]", stream: true, logprobs: 2 });
    let text = "";
    const tokens: string[] = [];
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      tokens.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
    }
    expect(text).toBe("Hello from");
    expect(tokens).toEqual(["Hello", " from"]);
  });

  it("refuses FIM on the reasoner and above 4096 max_tokens", async () => {
    const { key } = await readyAccount();
    const reasoner = await post("/beta/completions", key, { model: "deepseek-reasoner", prompt: "x" });
    expect(reasoner.status).toBe(400);
    const big = await post("/beta/completions", key, { model: "deepseek-chat", prompt: "x", max_tokens: 4097 });
    expect(big.status).toBe(400);
    expect((await big.json<any>()).error.message).toBe("Invalid max_tokens value, the valid range of max_tokens is [1, 4096]");
  });

  it("forwards chat prefix completion only under /beta", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const marker = `prefix-${crypto.randomUUID()}`;
    const body = {
      model: "deepseek-chat",
      messages: [
        { role: "user", content: `${marker} write code [[words:2]]` },
        { role: "assistant", content: "```python\n", prefix: true },
      ],
    };
    expect((await post("/chat/completions", key, body)).status).toBe(400);
    const res = await post("/beta/chat/completions", key, body);
    expect(res.status).toBe(200);
    const seen = (await fakeRequests()).find((r) => JSON.stringify(r.body).includes(marker));
    expect(seen.body.messages.at(-1)).toMatchObject({ role: "assistant", content: "```python\n", prefix: true });
  });
});

// A prompt certainly longer than the context is not tokenized in full: counting stops past the
// context and the 400 says "at least N"; a prompt whose count finished keeps exact numbers.
import { describe, expect, it } from "vitest";
import { MAX_BODY_BYTES } from "../../../workers/gateway/src/middleware/json-body";
import { BOS, loadTokenizer } from "../../../workers/gateway/src/tokenizer";
import { readyAccount } from "../setup/fixtures";
import { post, setupFakeWorker } from "./helpers";

const SENTENCE = "The quick brown fox jumps over the lazy dog. ";

describe("bounded token counting", () => {
  it("countTokensUpTo agrees with the full count below its limit and stops just past it", () => {
    const tokenizer = loadTokenizer();
    const text = `${BOS}${SENTENCE.repeat(300)}`;
    const full = tokenizer.countTokens(text);
    expect(tokenizer.countTokensUpTo(text, full)).toEqual({ count: full, complete: true });
    const stopped = tokenizer.countTokensUpTo(text, 100);
    expect(stopped.complete).toBe(false);
    expect(stopped.count).toBeGreaterThan(100);
    expect(stopped.count).toBeLessThan(120);
    // Stopping leaves the tokenizer as it was: the next full count is unchanged.
    expect(tokenizer.countTokens(text)).toBe(full);
    // A limit passed by the very first (added) token stops there.
    expect(tokenizer.countTokensUpTo(text, 0)).toEqual({ count: 1, complete: false });
  });

  it("an 8 MiB prompt is refused with 'at least N' tokens, N just past the context", async () => {
    const { key } = await readyAccount(50_000_000);
    await setupFakeWorker();
    const content = SENTENCE.repeat(Math.floor((MAX_BODY_BYTES - 200) / SENTENCE.length));
    const body = JSON.stringify({ model: "deepseek-chat", messages: [{ role: "user", content }], max_tokens: 100 });
    expect(body.length).toBeGreaterThan(8_000_000);
    expect(body.length).toBeLessThanOrEqual(MAX_BODY_BYTES);

    const res = await post("/chat/completions", key, body);
    expect(res.status).toBe(400);
    const { error } = await res.json<any>();
    const match =
      /^This model's maximum context length is 65536 tokens\. However, you requested at least (\d+) tokens \(at least (\d+) in the messages, 100 in the completion\)\. Please reduce the length of the messages or completion\.$/.exec(
        error.message,
      );
    expect(match, error.message).not.toBeNull();
    const [requested, messages] = [Number(match![1]), Number(match![2])];
    expect(requested).toBe(messages + 100);
    // The whole prompt is about 1.9 million tokens; counting stopped right past 65536.
    expect(messages).toBeGreaterThan(65536);
    expect(messages).toBeLessThan(65536 + 64);
  });

  it("FIM prompts stop the same way", async () => {
    const { key } = await readyAccount(50_000_000);
    await setupFakeWorker();
    const res = await post("/beta/completions", key, { model: "deepseek-chat", prompt: SENTENCE.repeat(20_000), max_tokens: 10 });
    expect(res.status).toBe(400);
    expect((await res.json<any>()).error.message).toMatch(/you requested at least \d+ tokens \(at least \d+ in the messages, 10 in the completion\)/);
  });

  it("a prompt that fits the context alone keeps exact numbers when max_tokens pushes it over", async () => {
    const { key } = await readyAccount(50_000_000);
    await setupFakeWorker();
    const messages = [{ role: "user", content: SENTENCE.repeat(6000) }];
    const res = await post("/chat/completions", key, { model: "deepseek-chat", messages, max_tokens: 8192 });
    expect(res.status).toBe(400);
    const message: string = (await res.json<any>()).error.message;
    expect(message).not.toContain("at least");
    const [, requested, prompt] = /you requested (\d+) tokens \((\d+) in the messages, 8192 in the completion\)/.exec(message)!.map(Number);
    expect(requested).toBe(prompt! + 8192);
    expect(prompt).toBeLessThanOrEqual(65536);
  });
});

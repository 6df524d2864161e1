// The gateway's tokenizer and prompt rendering give exactly the ids of the reference (jinja chat
// template + the `tokenizers` package) on the committed fixtures (scripts/gen-tokenizer-fixtures.py).
import { describe, expect, it } from "vitest";
import corpus from "../fixtures/tokenizer/corpus.json";
import vectors from "../fixtures/tokenizer/vectors.json";
import {
  type ChatMessage,
  countChatPromptTokens,
  countFimPromptTokens,
  loadTokenizer,
  renderChatPrompt,
  renderFimPrompt,
} from "../../workers/gateway/src/tokenizer";

interface Case {
  name: string;
  kind: "chat" | "fim";
  messages?: ChatMessage[];
  tools?: unknown[];
  model?: string;
  prompt?: string;
  suffix?: string;
  text: string;
  ids: number[];
}

const cases = vectors.cases as Case[];

describe("prompt fixtures", () => {
  for (const c of cases) {
    it(c.name, () => {
      const tokenizer = loadTokenizer();
      if (c.kind === "chat") {
        const text = renderChatPrompt(c.messages!, { tools: c.tools, model: c.model });
        expect(text).toBe(c.text);
        expect(tokenizer.encode(text)).toEqual(c.ids);
        expect(countChatPromptTokens(c.messages!, { tools: c.tools, model: c.model })).toBe(c.ids.length);
      } else {
        const text = renderFimPrompt(c.prompt!, c.suffix);
        expect(text).toBe(c.text);
        expect(tokenizer.encode(text)).toEqual(c.ids);
        expect(countFimPromptTokens(c.prompt!, c.suffix)).toBe(c.ids.length);
      }
    });
  }
});

describe("randomized corpus", () => {
  it("every text encodes to the reference ids", () => {
    const tokenizer = loadTokenizer();
    const mismatches: string[] = [];
    for (const entry of corpus.texts) {
      const ids = tokenizer.encode(entry.text);
      if (JSON.stringify(ids) !== JSON.stringify(entry.ids)) mismatches.push(JSON.stringify(entry.text));
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
    expect(corpus.texts.length).toBeGreaterThan(100);
  });

  it("long pieces (heap merge path) encode consistently", () => {
    // Long pieces take the heap path; a text of repeated letters is one long piece.
    const tokenizer = loadTokenizer();
    const long = "a".repeat(5000) + "é".repeat(300) + "中".repeat(2000) + " ".repeat(700) + "x";
    const ids = tokenizer.encode(long);
    expect(ids.length).toBeGreaterThan(0);
    expect(tokenizer.encode("a".repeat(5000))).toEqual(tokenizer.encode("a".repeat(2500) + "a".repeat(2500)));
  });
});

describe("prompt counts at the edge", () => {
  it("count a prompt that fits exactly, with the reference's count", () => {
    const long = renderChatPrompt([{ role: "user", content: "hello world ".repeat(6000) }]);
    expect(loadTokenizer().countTokensUpTo(long, 65_536)).toEqual({ count: 12_004, complete: true }); // the reference count (gpu_worker PromptRenderer)
    expect(loadTokenizer().countTokens(long)).toBe(12_004);
  });
});

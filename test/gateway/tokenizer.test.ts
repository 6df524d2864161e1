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
  mayExceedContext,
  promptTokensForContext,
  renderChatPrompt,
  renderFimPrompt,
  utf8Length,
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

describe("context helpers", () => {
  it("bounds tokens by the rendered prompt's UTF-8 length", () => {
    for (const c of cases) expect(c.ids.length).toBeLessThanOrEqual(utf8Length(c.text));
    for (const entry of corpus.texts) expect(entry.ids.length).toBeLessThanOrEqual(utf8Length(entry.text));
  });

  it("utf8Length matches TextEncoder", () => {
    for (const text of ["", "abc", "é", "中文", "😀x", "\ud800", "a\udc00b", ...corpus.texts.map((t) => t.text)]) {
      expect(utf8Length(text)).toBe(new TextEncoder().encode(text).length);
    }
  });

  it("decides when counting can be skipped", () => {
    expect(mayExceedContext(61_440, 4096, 65_536)).toBe(false);
    expect(mayExceedContext(61_441, 4096, 65_536)).toBe(true);
    expect(mayExceedContext(61_441, undefined, 65_536)).toBe(true);
    expect(mayExceedContext(100, 8192, 65_536)).toBe(false);
    const short = renderChatPrompt([{ role: "user", content: "hi" }]);
    expect(promptTokensForContext(short, 4096, 65_536)).toEqual({ tokens: utf8Length(short), exact: false, atLeast: false });
    const long = renderChatPrompt([{ role: "user", content: "hello world ".repeat(6000) }]);
    const counted = promptTokensForContext(long, 4096, 65_536);
    expect(counted).toEqual({ tokens: loadTokenizer().countTokens(long), exact: true, atLeast: false });
    expect(counted.tokens).toBe(12_004); // the reference count (gpu_worker PromptRenderer)
  });
});

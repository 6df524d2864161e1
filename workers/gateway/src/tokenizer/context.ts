// Prompt token counts for context enforcement, and when a request can skip counting.
import { type ChatMessage, type ChatPromptOptions, renderChatPrompt, renderFimPrompt } from "./chat-format";
import { loadTokenizer } from "./tokenizer";

export const DEFAULT_MAX_TOKENS = 4096;

/** Exact prompt tokens of a chat request, after the chat template. */
export function countChatPromptTokens(messages: ReadonlyArray<ChatMessage>, options: ChatPromptOptions = {}): number {
  return loadTokenizer().countTokens(renderChatPrompt(messages, options));
}

/** Exact prompt tokens of a FIM request. */
export function countFimPromptTokens(prompt: string, suffix?: string | null): number {
  return loadTokenizer().countTokens(renderFimPrompt(prompt, suffix));
}

/**
 * Whether a prompt of promptUtf8Bytes bytes (of the rendered prompt text) could exceed the
 * context with maxTokens. Every token, special tokens included, covers at least one byte of
 * the rendered text, so its byte length bounds its token count; the template's markers are
 * part of that text, so nothing else needs bounding.
 */
export function mayExceedContext(promptUtf8Bytes: number, maxTokens: number | undefined, contextLength: number): boolean {
  return promptUtf8Bytes + (maxTokens ?? DEFAULT_MAX_TOKENS) > contextLength;
}

/** UTF-8 byte length of text without encoding it (a lone surrogate counts as U+FFFD, 3 bytes). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) bytes += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 2; // 4 bytes for 2 code units
      i++;
    } else bytes += 2;
  }
  return bytes;
}

export interface PromptTokens {
  /**
   * Exact when `exact`; when `atLeast`, a lower bound already past what fits (counting stopped
   * there); otherwise an upper bound (the prompt's UTF-8 length) that already fits.
   */
  tokens: number;
  exact: boolean;
  atLeast: boolean;
}

/**
 * Prompt tokens for the context check: the byte-length upper bound (no tokenizer work) when
 * the prompt surely fits, else the exact count, which stops once the prompt alone is longer
 * than the context: an oversized body costs about one context of tokenizer work, and a prompt
 * that fits without its max_tokens keeps an exact count (clients shorten max_tokens by it).
 */
export function promptTokensForContext(prompt: string, maxTokens: number | undefined, contextLength: number): PromptTokens {
  const bound = utf8Length(prompt);
  if (!mayExceedContext(bound, maxTokens, contextLength)) return { tokens: bound, exact: false, atLeast: false };
  const { count, complete } = loadTokenizer().countTokensUpTo(prompt, contextLength);
  return { tokens: count, exact: complete, atLeast: !complete };
}

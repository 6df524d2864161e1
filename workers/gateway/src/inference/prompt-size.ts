// Prompt size at the edge: the rendered prompt (DeepSeek-V3 chat template / FIM format) and
// its token count for the context check and the reservation. The count is exact even for short
// prompts: the reservation holds the worst case priced on it, and a prompt's byte length (an
// upper bound of its tokens, about four times the count for English) held that much more money,
// refusing requests the balance covered. Counting stops once the prompt alone is longer than the
// context: an oversized body costs about one context of tokenizer work, and a prompt that fits
// without its max_tokens keeps an exact count (clients shorten max_tokens by it).
import { loadTokenizer, renderChatPrompt, renderFimPrompt, type ChatMessage } from "../tokenizer";

export interface PromptSize {
  tokens: number;
  // Counting stopped once the prompt surely did not fit: `tokens` is then a lower bound.
  atLeast: boolean;
  // The opening of the prompt (about one 64-token cache block): the routing affinity key.
  head: string;
}

const AFFINITY_HEAD_CHARS = 256;

function measure(prompt: string, contextLength: number): PromptSize {
  const { count, complete } = loadTokenizer().countTokensUpTo(prompt, contextLength);
  return { tokens: count, atLeast: !complete, head: prompt.slice(0, AFFINITY_HEAD_CHARS) };
}

export function measureChatPrompt(
  messages: ReadonlyArray<ChatMessage>,
  options: { tools?: ReadonlyArray<unknown>; model: string },
  contextLength: number,
): PromptSize {
  return measure(renderChatPrompt(messages, { tools: options.tools, model: options.model }), contextLength);
}

export function measureFimPrompt(prompt: string, suffix: string | null, contextLength: number): PromptSize {
  return measure(renderFimPrompt(prompt, suffix), contextLength);
}

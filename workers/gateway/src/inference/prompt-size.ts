// Prompt size at the edge: the rendered prompt (DeepSeek-V3 chat template / FIM format) and
// its token count for the context check and the reservation. The count is exact even for short
// prompts: the reservation holds the worst case priced on it, and a prompt's byte length (an
// upper bound of its tokens, about four times the count for English) held that much more money,
// refusing requests the balance covered.
import { loadTokenizer, promptTokensForContext, renderChatPrompt, renderFimPrompt, type ChatMessage } from "../tokenizer";

export interface PromptSize {
  tokens: number;
  // Counting stopped once the prompt surely did not fit: `tokens` is then a lower bound.
  atLeast: boolean;
  // The opening of the prompt (about one 64-token cache block): the routing affinity key.
  head: string;
}

const AFFINITY_HEAD_CHARS = 256;

function measure(prompt: string, maxTokens: number, contextLength: number): PromptSize {
  const forContext = promptTokensForContext(prompt, maxTokens, contextLength);
  const counted = forContext.exact || forContext.atLeast;
  const tokens = counted ? forContext.tokens : loadTokenizer().countTokens(prompt);
  return { tokens, atLeast: forContext.atLeast, head: prompt.slice(0, AFFINITY_HEAD_CHARS) };
}

export function measureChatPrompt(
  messages: ReadonlyArray<ChatMessage>,
  options: { tools?: ReadonlyArray<unknown>; model: string },
  maxTokens: number,
  contextLength: number,
): PromptSize {
  return measure(renderChatPrompt(messages, { tools: options.tools, model: options.model }), maxTokens, contextLength);
}

export function measureFimPrompt(prompt: string, suffix: string | null, maxTokens: number, contextLength: number): PromptSize {
  return measure(renderFimPrompt(prompt, suffix), maxTokens, contextLength);
}

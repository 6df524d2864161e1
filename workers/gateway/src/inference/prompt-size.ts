// Prompt size at the edge: the rendered prompt (DeepSeek-V3 chat template / FIM format) and
// its token count for the context check and the reservation. Short prompts that cannot reach
// the context limit skip the exact count and use their byte length, an upper bound.
import { promptTokensForContext, renderChatPrompt, renderFimPrompt, type ChatMessage } from "../tokenizer";

export interface PromptSize {
  tokens: number;
  exact: boolean;
  // The opening of the prompt (about one 64-token cache block): the routing affinity key.
  head: string;
}

const AFFINITY_HEAD_CHARS = 256;

function measure(prompt: string, maxTokens: number, contextLength: number): PromptSize {
  const { tokens, exact } = promptTokensForContext(prompt, maxTokens, contextLength);
  return { tokens, exact, head: prompt.slice(0, AFFINITY_HEAD_CHARS) };
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

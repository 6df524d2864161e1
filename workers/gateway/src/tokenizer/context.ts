// Exact prompt token counts after the chat template / FIM format.
import { type ChatMessage, type ChatPromptOptions, renderChatPrompt, renderFimPrompt } from "./chat-format";
import { loadTokenizer } from "./tokenizer";

/** Exact prompt tokens of a chat request, after the chat template. */
export function countChatPromptTokens(messages: ReadonlyArray<ChatMessage>, options: ChatPromptOptions = {}): number {
  return loadTokenizer().countTokens(renderChatPrompt(messages, options));
}

/** Exact prompt tokens of a FIM request. */
export function countFimPromptTokens(prompt: string, suffix?: string | null): number {
  return loadTokenizer().countTokens(renderFimPrompt(prompt, suffix));
}

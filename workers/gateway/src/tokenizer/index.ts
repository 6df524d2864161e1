// Exact prompt token counts with DeepSeek-V3's own tokenizer and chat template (README.md).
export {
  BOS,
  type ChatMessage,
  type ChatPromptOptions,
  type MessageContent,
  REASONER_MODEL,
  renderChatPrompt,
  renderFimPrompt,
  renderToolsPrompt,
  textContent,
} from "./chat-format";
export {
  countChatPromptTokens,
  countFimPromptTokens,
} from "./context";
export { DeepSeekTokenizer, loadTokenizer } from "./tokenizer";

// Request validation for the completion endpoints: pure, synchronous, zod-typed.
export { validateChatRequest, JSON_SCHEMA_UNAVAILABLE, JSON_WORD_REQUIRED } from "./chat";
export type { ChatValidationContext, ValidatedChat } from "./chat";
export { chatRequestSchema, chatMessageSchema, toolSchema, MAX_TOOLS, MAX_TOP_LOGPROBS, TEXT_PART_SEPARATOR } from "./chat-schema";
export type { ChatMessage, ChatMessageInput, ChatRequest, ToolCall, ToolChoice, ToolDefinition } from "./chat-schema";
export { validateFimRequest, fimRequestSchema, FIM_MAX_TOKENS } from "./fim";
export type { FimRequest, FimValidationContext, ValidatedFim } from "./fim";
export { MAX_STOP_SEQUENCES } from "./fields";
export { REASONING_CONTENT_IN_INPUT, successiveMessages } from "./messages";
export { MODEL_NOT_EXIST, maxTokensOutOfRange } from "./request";

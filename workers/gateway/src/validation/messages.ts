// Rules on the message list that need the model or the endpoint: prefix completion, assistant
// turns without content, and deepseek-reasoner's rules on reasoning_content and turn order.
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";
import type { ChatMessage } from "./chat-schema";

export const REASONING_CONTENT_IN_INPUT =
  "The reasoning_content is an intermediate result for display purposes only and will not be included in the context for inference. Please remove the reasoning_content from your message to reduce network traffic.";

export const successiveMessages = (i: number, j: number) =>
  `deepseek-reasoner does not support successive user or assistant messages (messages[${i}] and messages[${j}] in your input). You should interleave the user/assistant messages in the message sequence.`;

/**
 * Validates the list and returns it ready for the worker, and whether the last message is a
 * prefix to continue. reasoning_content survives only on a reasoner's prefix message; for
 * models without reasoning it is dropped (it could not be used), for the reasoner it is a 400.
 */
export function checkMessages(messages: ChatMessage[], model: Model, beta: boolean): { messages: ChatMessage[]; prefixCompletion: boolean } {
  const last = messages.length - 1;

  messages.forEach((message, i) => {
    if (message.role !== "assistant") return;
    if (message.prefix === true) {
      if (!beta) throw badRequest(`messages[${i}].prefix: chat prefix completion is only available on the beta API (base URL /beta)`, `messages[${i}].prefix`);
      if (i !== last) throw badRequest(`messages[${i}].prefix: only the last message may set prefix: true`, `messages[${i}].prefix`);
      if (message.content === null) throw badRequest(`messages[${i}].content: the prefix message must have content to continue`, `messages[${i}].content`);
    }
    if (message.content === null && !message.tool_calls?.length) {
      throw badRequest(`messages[${i}]: an assistant message must have content or tool_calls`, `messages[${i}]`);
    }
  });

  const lastMessage = messages[last];
  const prefixCompletion = lastMessage?.role === "assistant" && lastMessage.prefix === true;

  if (model.isReasoner) {
    messages.forEach((message, i) => {
      const allowed = prefixCompletion && i === last;
      if (message.role === "assistant" && message.reasoning_content !== undefined && !allowed) {
        throw badRequest(REASONING_CONTENT_IN_INPUT, `messages[${i}].reasoning_content`);
      }
    });
    checkInterleaved(messages);
  }

  return {
    prefixCompletion,
    messages: messages.map((message, i) => {
      if (message.role !== "assistant") return message;
      const { prefix, reasoning_content, ...rest } = message;
      const keepReasoning = model.isReasoner && prefixCompletion && i === last && reasoning_content !== undefined;
      return { ...rest, ...(prefix ? { prefix } : {}), ...(keepReasoning ? { reasoning_content } : {}) };
    }),
  };
}

/**
 * deepseek-reasoner needs user and assistant turns to alternate. System messages are not
 * turns and are skipped (as DeepSeek does); a tool message sits between turns and resets the
 * comparison. Indices name positions in the client's messages array.
 */
function checkInterleaved(messages: ChatMessage[]): void {
  let previous = null as { role: ChatMessage["role"]; index: number } | null;
  for (const [index, message] of messages.entries()) {
    if (message.role === "system") continue;
    if (previous?.role === message.role && (message.role === "user" || message.role === "assistant")) {
      throw badRequest(successiveMessages(previous.index, index), "messages");
    }
    previous = { role: message.role, index };
  }
}

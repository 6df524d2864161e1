// Context enforcement: prompt tokens (after the chat template) + max_tokens must fit the model.
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";

export function enforceContext(model: Model, promptTokens: number, maxTokens: number): void {
  const requested = promptTokens + maxTokens;
  if (requested <= model.contextLength) return;
  throw badRequest(
    `This model's maximum context length is ${model.contextLength} tokens. However, you requested ${requested} tokens ` +
      `(${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
    "messages",
  );
}

// Context enforcement: prompt tokens (after the chat template) + max_tokens must fit the model.
// When counting stopped early (`atLeast`), the prompt's count is a lower bound and the message
// says so; otherwise its numbers are exact.
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";

export function enforceContext(model: Model, promptTokens: number, maxTokens: number, atLeast = false): void {
  const requested = promptTokens + maxTokens;
  if (requested <= model.contextLength) return;
  const bound = atLeast ? "at least " : "";
  throw badRequest(
    `This model's maximum context length is ${model.contextLength} tokens. However, you requested ${bound}${requested} tokens ` +
      `(${bound}${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
    "messages",
  );
}

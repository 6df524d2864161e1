// The chat pipeline after validation, shared by /chat/completions and /anthropic/v1/messages:
//   context (exact prompt tokens) -> rateLimit -> reserve -> forward -> settle
import type { Context } from "hono";
import type { AppEnv } from "../env";
import type { ApiError } from "../errors/api-error";
import type { ValidatedChat } from "../validation";
import { enforceContext } from "./context-limit";
import type { ResponseEncoder } from "./encoder";
import { measureChatPrompt } from "./prompt-size";
import { runInference, type InferenceJob } from "./run-inference";

export interface ChatInferenceOptions {
  endpoint: InferenceJob["endpoint"];
  // A protocol may word the context error its own way (Anthropic clients act on theirs).
  contextError?: (promptTokens: number, maxTokens: number, contextLength: number, atLeast: boolean) => ApiError;
}

export function runChatInference(c: Context<AppEnv>, chat: ValidatedChat, encoder: ResponseEncoder, options: ChatInferenceOptions): Promise<Response> {
  const measureStarted = performance.now();
  const prompt = measureChatPrompt(chat.messages, { tools: chat.tools, model: chat.model.id }, chat.model.contextLength);
  c.get("timings").prompt = performance.now() - measureStarted;
  try {
    enforceContext(chat.model, prompt.tokens, chat.maxTokens, prompt.atLeast);
  } catch (err) {
    throw options.contextError ? options.contextError(prompt.tokens, chat.maxTokens, chat.model.contextLength, prompt.atLeast) : err;
  }
  return runInference(
    c,
    {
      endpoint: options.endpoint,
      model: chat.model,
      upstreamPath: "/v1/chat/completions",
      upstreamBody: chat.upstreamBody,
      promptTokens: prompt.tokens,
      maxTokens: chat.maxTokens,
      affinityText: prompt.head,
    },
    encoder,
  );
}

// POST /chat/completions (also under /v1 and /beta). The pipeline, top to bottom:
//   auth -> validate -> context (exact prompt tokens) -> rateLimit -> reserve -> forward -> settle
// (the last four live in inference/run-inference.ts, shared with /beta/completions and the
// Anthropic endpoint).
import { Hono } from "hono";
import { authenticate } from "../auth/authenticate";
import { modelRegistry } from "../db/models";
import type { AppEnv } from "../env";
import { enforceContext } from "../inference/context-limit";
import { ChatJsonEncoder, ChatStreamEncoder } from "../inference/openai-chat";
import { runInference } from "../inference/run-inference";
import { readJsonBody } from "../middleware/json-body";
import { measureChatPrompt } from "../inference/prompt-size";
import { validateChatRequest } from "../validation";

export function chatRoute(options: { beta: boolean }) {
  return new Hono<AppEnv>().use(authenticate).post("/", async (c) => {
    const { body } = await readJsonBody(c.req.raw);
    const chat = validateChatRequest(body, { beta: options.beta, models: await modelRegistry(c.env.DB) });

    const prompt = measureChatPrompt(chat.messages, { tools: chat.tools, model: chat.model.id }, chat.maxTokens, chat.model.contextLength);
    enforceContext(chat.model, prompt.tokens, chat.maxTokens);

    const id = c.get("traceId");
    const encoder = chat.stream ? new ChatStreamEncoder(chat.includeUsage, chat.model.id, id) : new ChatJsonEncoder(chat.model.id, id);
    return runInference(
      c,
      {
        endpoint: "chat.completions",
        model: chat.model,
        upstreamPath: "/v1/chat/completions",
        upstreamBody: chat.upstreamBody,
        promptTokens: prompt.tokens,
        maxTokens: chat.maxTokens,
        affinityText: prompt.head,
      },
      encoder,
    );
  });
}

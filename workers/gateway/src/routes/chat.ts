// POST /chat/completions (also under /v1 and /beta). The pipeline, top to bottom:
//   auth -> validate -> context (exact prompt tokens) -> rateLimit -> reserve -> forward -> settle
// (context onwards lives in inference/, shared with /beta/completions and the Anthropic endpoint).
import { Hono } from "hono";
import { authenticate } from "../auth/authenticate";
import { modelRegistry } from "../db/models";
import type { AppEnv } from "../env";
import { runChatInference } from "../inference/chat-inference";
import { ChatJsonEncoder } from "../inference/openai-chat";
import { OpenAiStreamEncoder } from "../inference/openai-stream";
import { readJsonBody } from "../middleware/json-body";
import { validateChatRequest } from "../validation";

export function chatRoute(options: { beta: boolean }) {
  return new Hono<AppEnv>().use(authenticate).post("/", async (c) => {
    const { body } = await readJsonBody(c.req.raw);
    const chat = validateChatRequest(body, { beta: options.beta, models: await modelRegistry(c.env.DB) });

    const id = c.get("traceId");
    const encoder = chat.stream ? new OpenAiStreamEncoder("chat.completion.chunk", chat.includeUsage, chat.model.id, id) : new ChatJsonEncoder(chat.model.id, id);
    return runChatInference(c, chat, encoder, { endpoint: "chat.completions" });
  });
}

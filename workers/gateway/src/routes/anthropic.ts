// POST /anthropic/v1/messages: the Anthropic Messages API, for Claude Code and the Anthropic
// SDKs (base URL `<gateway>/anthropic`). The request is translated into a chat body and then
// takes the chat pipeline unchanged:
//   auth -> translate -> validate -> context -> rateLimit -> reserve -> forward -> settle
// Only the edges differ: the request's vocabulary (anthropic/request.ts), the response's
// (anthropic/stream.ts, anthropic/response.ts) and the error body (anthropic/errors.ts).
import { Hono } from "hono";
import { toChatBody, parseMessagesRequest } from "../anthropic/request";
import { anthropicOnError, contextLimitExceeded } from "../anthropic/errors";
import { AnthropicJsonEncoder } from "../anthropic/response";
import { AnthropicStreamEncoder } from "../anthropic/stream";
import { authenticate } from "../auth/authenticate";
import { modelRegistry } from "../db/models";
import type { AppEnv } from "../env";
import { ApiError } from "../errors/api-error";
import { runChatInference } from "../inference/chat-inference";
import { measureChatPrompt } from "../inference/prompt-size";
import { admit } from "../limits/admit";
import { readJsonBody } from "../middleware/json-body";
import { validateChatRequest } from "../validation";

export const anthropicRoute = new Hono<AppEnv>();
anthropicRoute.onError(anthropicOnError);
anthropicRoute.use(authenticate);

anthropicRoute.post("/v1/messages", async (c) => {
  const { body } = await readJsonBody(c.req.raw);
  const request = parseMessagesRequest(body);
  const models = await modelRegistry(c.env.DB);
  // beta: an Anthropic prefill (trailing assistant message) is a chat prefix completion.
  const chat = validateChatRequest(toChatBody(request, [...models.values()]), { beta: true, models });

  const id = `msg_${c.get("traceId").replaceAll("-", "")}`;
  const stopSequences = request.stop_sequences ?? [];
  const encoder = chat.stream
    ? new AnthropicStreamEncoder(id, chat.model.id, stopSequences)
    : new AnthropicJsonEncoder(id, chat.model.id, stopSequences);
  return runChatInference(c, chat, encoder, { endpoint: "anthropic.messages", contextError: contextLimitExceeded });
});

// The prompt's exact token count: the chat template the context check renders, counted by the
// tokenizer it uses. max_tokens is not part of a count request: one the client sends anyway
// (a whole Messages body) is replaced, so its size cannot turn a count into a 400.
// A count is an API request like any other: it takes one of the key's requests per minute and a
// concurrency slot (no tokens: nothing is generated), and counting stops past the model's
// context, as the chat path's does, with the error a too-long Messages request gets.
anthropicRoute.post("/v1/messages/count_tokens", async (c) => {
  const auth = await c.get("keyCheck").verify();
  const admission = await admit(c.env, auth, c.get("traceId"), 0);
  try {
    const { body } = await readJsonBody(c.req.raw);
    const withMax = typeof body === "object" && body !== null && !Array.isArray(body) ? { ...body, max_tokens: 1 } : body;
    const request = parseMessagesRequest(withMax);
    const models = await modelRegistry(c.env.DB);
    const { messages, tools, model } = validateChatRequest(toChatBody(request, [...models.values()]), { beta: true, models });
    const prompt = measureChatPrompt(messages, { tools, model: model.id }, model.contextLength);
    if (prompt.atLeast) throw contextLimitExceeded(prompt.tokens, 0, model.contextLength, true);
    return c.json({ input_tokens: prompt.tokens }, 200, admission.headers);
  } finally {
    await admission.finish(0);
  }
});

// Anything else under /anthropic answers in Anthropic's error shape too.
anthropicRoute.all("/*", (c) => {
  throw new ApiError(404, `Not Found: ${c.req.method} ${new URL(c.req.url).pathname}`);
});

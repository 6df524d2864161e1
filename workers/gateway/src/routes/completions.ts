// POST /beta/completions: fill-in-the-middle. Same pipeline as chat:
//   auth -> validate -> context -> rateLimit -> reserve -> forward -> settle
import { Hono } from "hono";
import { authenticate } from "../auth/authenticate";
import { modelRegistry } from "../db/models";
import type { AppEnv } from "../env";
import { enforceContext } from "../inference/context-limit";
import { CompletionJsonEncoder } from "../inference/openai-completion";
import { OpenAiStreamEncoder } from "../inference/openai-stream";
import { runInference } from "../inference/run-inference";
import { readJsonBody } from "../middleware/json-body";
import { measureFimPrompt } from "../inference/prompt-size";
import { validateFimRequest } from "../validation";

export const completionsRoute = new Hono<AppEnv>().use(authenticate).post("/", async (c) => {
  const { body } = await readJsonBody(c.req.raw);
  const fim = validateFimRequest(body, { models: await modelRegistry(c.env.DB) });

  const prompt = measureFimPrompt(fim.prompt, fim.suffix, fim.model.contextLength);
  enforceContext(fim.model, prompt.tokens, fim.maxTokens, prompt.atLeast);

  const id = c.get("traceId");
  const encoder = fim.stream ? new OpenAiStreamEncoder("text_completion", fim.includeUsage, fim.model.id, id) : new CompletionJsonEncoder(fim.model.id, id);
  return runInference(
    c,
    {
      endpoint: "completions",
      model: fim.model,
      upstreamPath: "/v1/completions",
      upstreamBody: fim.upstreamBody,
      promptTokens: prompt.tokens,
      maxTokens: fim.maxTokens,
      affinityText: prompt.head,
    },
    encoder,
  );
});

// validateChatRequest: the DeepSeek rules for POST /chat/completions (and /v1, /beta).
// Shape first (400/422 from the schema), then what needs the model and the endpoint.
// Pure and synchronous: the caller supplies the model registry.
import type { Model } from "../db/schema";
import { badRequest } from "../errors/api-error";
import { type ChatMessage, type ChatRequest, type ToolDefinition, chatRequestSchema } from "./chat-schema";
import { SAMPLING_FIELDS, UPSTREAM_STREAM_OPTIONS, setFields } from "./fields";
import { checkMessages } from "./messages";
import { checkMaxTokens, requireJsonObject, resolveModel } from "./request";
import { strictSchemaViolation } from "./strict-tools";
import { parseOrThrow } from "./zod-issues";

export const JSON_SCHEMA_UNAVAILABLE = "This response_format type is unavailable now";
export const JSON_WORD_REQUIRED = "Prompt must contain the word 'json' in some form to use 'response_format' of type 'json_object'";

export interface ChatValidationContext {
  /** The request came in under /beta: prefix completion and strict tools are allowed. */
  beta: boolean;
  models: ReadonlyMap<string, Model>;
}

export interface ValidatedChat {
  model: Model;
  /** Normalized: text parts joined into one string; prefix/reasoning_content only where they apply. */
  messages: ChatMessage[];
  tools: ToolDefinition[] | undefined;
  maxTokens: number;
  stream: boolean;
  /** stream_options.include_usage, only meaningful (and only true) when streaming. */
  includeUsage: boolean;
  prefixCompletion: boolean;
  logprobs: boolean;
  topLogprobs: number | null;
  /** The body for the GPU worker: validated fields only, always streaming with cumulative usage. */
  upstreamBody: Record<string, unknown>;
}

const notSupported = (what: string, model: Model, param: string) => badRequest(`${what} is not supported by this model (${model.id})`, param);

export function validateChatRequest(body: unknown, ctx: ChatValidationContext): ValidatedChat {
  const request = parseOrThrow(chatRequestSchema, requireJsonObject(body));
  const model = resolveModel(request.model, ctx.models);
  const maxTokens = checkMaxTokens(requestedMaxTokens(request), model.defaultMaxTokens, model.maxMaxTokens);

  // An empty tools array asks for nothing; treat it as absent rather than failing clients that send [].
  const tools = request.tools?.length ? request.tools : undefined;
  const logprobs = request.logprobs === true;
  const topLogprobs = request.top_logprobs ?? null;

  if (tools && !model.supportsTools) throw notSupported("Function calling (tools)", model, "tools");
  if (request.response_format?.type === "json_object" && !model.supportsJsonOutput) {
    throw notSupported("response_format of type 'json_object'", model, "response_format");
  }
  if (model.isReasoner && (logprobs || topLogprobs !== null)) throw notSupported("logprobs", model, logprobs ? "logprobs" : "top_logprobs");

  const { messages, prefixCompletion } = checkMessages(request.messages, model, ctx.beta);
  if (tools) checkTools(tools, ctx.beta);
  checkToolChoice(request.tool_choice, tools);
  checkResponseFormat(request, messages);
  if (topLogprobs !== null && !logprobs) {
    throw badRequest("top_logprobs: logprobs must be set to true when top_logprobs is used", "top_logprobs");
  }

  const stream = request.stream === true;
  return {
    model,
    messages,
    tools,
    maxTokens,
    stream,
    includeUsage: stream && request.stream_options?.include_usage === true,
    prefixCompletion,
    logprobs,
    topLogprobs,
    upstreamBody: upstreamBody(request, { model, messages, tools, maxTokens }),
  };
}

// max_completion_tokens means max_tokens (OpenAI renamed it); both given must agree.
function requestedMaxTokens(request: ChatRequest): number | null | undefined {
  const { max_tokens: maxTokens, max_completion_tokens: maxCompletionTokens } = request;
  if (maxTokens != null && maxCompletionTokens != null && maxTokens !== maxCompletionTokens) {
    throw badRequest(
      `max_tokens (${maxTokens}) and max_completion_tokens (${maxCompletionTokens}) are both set, to different values: set only one of them`,
      "max_completion_tokens",
    );
  }
  return maxTokens ?? maxCompletionTokens;
}

function checkTools(tools: ToolDefinition[], beta: boolean): void {
  tools.forEach((tool, i) => {
    const { name, parameters, strict } = tool.function;
    if (parameters && parameters.type !== undefined && parameters.type !== "object") {
      throw badRequest(`Invalid schema for function '${name}': the parameters schema must have type 'object'`, `tools[${i}].function.parameters`);
    }
    if (strict !== true) return;
    if (!beta) throw badRequest(`tools[${i}].function.strict: strict mode is only available on the beta API (base URL /beta)`, `tools[${i}].function.strict`);
    const violation = strictSchemaViolation(parameters ?? { type: "object", properties: {}, required: [], additionalProperties: false });
    if (violation) throw badRequest(`Invalid schema for function '${name}': in strict mode, ${violation}`, `tools[${i}].function.parameters`);
  });
}

function checkToolChoice(choice: ChatRequest["tool_choice"], tools: ToolDefinition[] | undefined): void {
  if (choice === undefined || choice === null || choice === "none" || choice === "auto") return;
  if (!tools) throw badRequest(`tool_choice: ${typeof choice === "string" ? `'${choice}'` : "a named function"} requires tools to be specified`, "tool_choice");
  if (typeof choice === "string") return;
  const name = choice.function.name;
  if (!tools.some((tool) => tool.function.name === name)) {
    throw badRequest(`tool_choice: function '${name}' is not among the tools`, "tool_choice.function.name");
  }
}

function checkResponseFormat(request: ChatRequest, messages: ChatMessage[]): void {
  const type = request.response_format?.type;
  if (type === "json_schema") throw badRequest(JSON_SCHEMA_UNAVAILABLE, "response_format");
  if (type !== "json_object") return;
  const mentionsJson = messages.some((m) => (m.role === "system" || m.role === "user") && /json/i.test(m.content));
  if (!mentionsJson) throw badRequest(JSON_WORD_REQUIRED, "response_format");
}

function upstreamBody(
  request: ChatRequest,
  v: { model: Model; messages: ChatMessage[]; tools: ToolDefinition[] | undefined; maxTokens: number },
): Record<string, unknown> {
  const body: Record<string, unknown> = { model: v.model.id, messages: v.messages, max_tokens: v.maxTokens };
  // The reasoner accepts sampling parameters for compatibility and ignores them.
  if (!v.model.isReasoner) setFields(body, request, SAMPLING_FIELDS);
  setFields(body, request, ["stop", "response_format"]);
  if (v.tools) {
    body.tools = v.tools;
    setFields(body, request, ["tool_choice"]);
  }
  if (request.logprobs === true) {
    body.logprobs = true;
    setFields(body, request, ["top_logprobs"]);
  }
  body.stream = true;
  body.stream_options = { ...UPSTREAM_STREAM_OPTIONS };
  return body;
}

// The request body of POST /chat/completions as zod schemas: the one source of the request
// types. Parsing also normalizes: content given as text parts is joined into one string
// (so the gateway counts and the worker sees the same text), and unset optional fields are
// dropped. Rules that need the model or the endpoint live in chat.ts.
import { z } from "zod";
import { MAX_STOP_SEQUENCES, compact, integer, integerInRange, samplingFields, stopSchema, streamFields } from "./fields";

export const MAX_TOOLS = 128;
export const MAX_TOP_LOGPROBS = 20;
export const TOOL_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
/** Text parts are joined with a newline, as vLLM and SGLang do for OpenAI-style parts. */
export const TEXT_PART_SEPARATOR = "\n";

const textPart = z.object({ type: z.literal("text"), text: z.string() });

/** A string, or an array of `{type: "text", text}` parts joined into one string. */
const content = z
  .union([z.string(), z.array(textPart)])
  .transform((value) => (typeof value === "string" ? value : value.map((part) => part.text).join(TEXT_PART_SEPARATOR)));

const name = z.string().nullish();

export const toolCallSchema = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

const systemMessage = z.object({ role: z.literal("system"), content, name }).transform(compact);
const userMessage = z.object({ role: z.literal("user"), content, name }).transform(compact);
const assistantMessage = z
  .object({
    role: z.literal("assistant"),
    content: content.nullish(),
    name,
    tool_calls: z.array(toolCallSchema).nullish(),
    prefix: z.boolean().nullish(),
    reasoning_content: z.string().nullish(),
  })
  // content stays present (null when absent): OpenAI-style consumers expect the key.
  .transform(({ role, content, ...rest }) => ({ role, content: content ?? null, ...compact(rest) }));
const toolMessage = z.object({ role: z.literal("tool"), content, tool_call_id: z.string() });

export const chatMessageSchema = z.discriminatedUnion("role", [systemMessage, userMessage, assistantMessage, toolMessage]);

/** A JSON object (not an array, not null). */
const jsonObject = z.record(z.string(), z.unknown());

export const toolSchema = z.object({
  type: z.literal("function"),
  function: z
    .object({
      name: z.string().regex(TOOL_NAME_PATTERN, {
        error: "invalid function name: it must be 1 to 64 characters of a-z, A-Z, 0-9, underscores and dashes",
      }),
      description: z.string().nullish(),
      parameters: jsonObject.nullish(),
      strict: z.boolean().nullish(),
    })
    .transform(compact),
});

export const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);

export const responseFormatSchema = z.object({ type: z.enum(["text", "json_object", "json_schema"]) });

export const chatRequestSchema = z.object({
  model: z.string(),
  messages: z.array(chatMessageSchema).refine((messages) => messages.length > 0, {
    error: "messages: invalid length 0, expected at least one message",
  }),
  max_tokens: integer().nullish(),
  // OpenAI's newer name for max_tokens (the OpenAI SDK sends it); chat.ts reconciles the two.
  max_completion_tokens: integer().nullish(),
  ...samplingFields,
  stop: stopSchema.nullish(),
  ...streamFields,
  response_format: responseFormatSchema.nullish(),
  tools: z.array(toolSchema).max(MAX_TOOLS, { error: `Invalid tools value, at most ${MAX_TOOLS} tools are allowed` }).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: integerInRange("top_logprobs", 0, MAX_TOP_LOGPROBS).nullish(),
});

export type ChatRequest = z.output<typeof chatRequestSchema>;
/** A message as the client sends it. */
export type ChatMessageInput = z.input<typeof chatMessageSchema>;
/** A normalized message: content is one string (null only for an assistant with tool calls). */
export type ChatMessage = z.output<typeof chatMessageSchema>;
export type ToolCall = z.output<typeof toolCallSchema>;
export type ToolDefinition = z.output<typeof toolSchema>;
export type ToolChoice = z.output<typeof toolChoiceSchema>;

export { MAX_STOP_SEQUENCES };

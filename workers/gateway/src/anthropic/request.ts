// The Anthropic Messages request (POST /anthropic/v1/messages) and its translation into an
// OpenAI chat body, which then runs through the chat pipeline like any other request.
//
// Mapping decisions (the contract's "Anthropic format" section leaves these open):
// - Model: a registry id is used as given. Any other name maps to deepseek-chat, except that
//   `thinking: {type: "enabled"}` on a request without tools maps to the reasoner (the
//   reasoner cannot call tools, and agents such as Claude Code always send tools).
// - max_tokens is a ceiling in Anthropic's API and clients send large ones (Claude Code asks
//   for 32000), so it is clamped to the model's maximum instead of refused.
// - Thinking blocks of earlier assistant turns are dropped: the reasoner never reads its own
//   reasoning back. A trailing assistant message is Anthropic's "prefill"; it becomes a chat
//   prefix completion, and there the reasoner keeps its thinking as reasoning_content.
// - Consecutive messages of one role are merged into one turn, as Anthropic's API does.
// - tool_result content (string or text blocks) becomes a tool message; `is_error` is not
//   representable in a tool message and is dropped.
// - Unknown top-level fields are ignored, for clients newer than this translation.
import { z } from "zod";
import { badRequest } from "../errors/api-error";

const cacheControl = { cache_control: z.unknown().optional() };

const textBlock = z.object({ type: z.literal("text"), text: z.string(), ...cacheControl });

// Block types the platform cannot serve: listed so that the error names what is unsupported.
const refused = <T extends string>(type: T) =>
  z.object({ type: z.literal(type) }).check((ctx) => {
    ctx.issues.push({ code: "custom", message: `${type} content blocks are not supported`, input: ctx.value });
  });
const unsupportedBlocks = [
  refused("image"),
  refused("document"),
  refused("search_result"),
  refused("server_tool_use"),
  refused("web_search_tool_result"),
  refused("container_upload"),
] as const;

const toolResultBlock = z.object({
  type: z.literal("tool_result"),
  tool_use_id: z.string(),
  content: z.union([z.string(), z.array(z.discriminatedUnion("type", [textBlock, ...unsupportedBlocks]))]).optional(),
  is_error: z.boolean().optional(),
  ...cacheControl,
});

const contentBlock = z.discriminatedUnion("type", [
  textBlock,
  z.object({ type: z.literal("tool_use"), id: z.string(), name: z.string(), input: z.record(z.string(), z.unknown()), ...cacheControl }),
  toolResultBlock,
  z.object({ type: z.literal("thinking"), thinking: z.string(), signature: z.string().optional() }),
  z.object({ type: z.literal("redacted_thinking"), data: z.string() }),
  ...unsupportedBlocks,
]);

const message = z.object({
  role: z.enum(["user", "assistant"]),
  content: z.union([z.string(), z.array(contentBlock)]),
});

const tool = z.object({
  type: z.literal("custom").optional(),
  name: z.string(),
  description: z.string().optional(),
  input_schema: z.record(z.string(), z.unknown()),
  ...cacheControl,
});

const toolChoice = z.discriminatedUnion("type", [
  z.object({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("tool"), name: z.string(), disable_parallel_tool_use: z.boolean().optional() }),
  z.object({ type: z.literal("none") }),
]);

// Ignored by contract (accepted, never used): top_k, metadata, service_tier, cache_control,
// container, mcp_servers. Being absent from this object, zod strips them.
export const messagesRequestSchema = z.object({
  model: z.string(),
  max_tokens: z.number().int().min(1),
  messages: z.array(message).min(1),
  system: z.union([z.string(), z.array(textBlock)]).optional(),
  stop_sequences: z.array(z.string()).optional(),
  stream: z.boolean().optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  thinking: z.object({ type: z.string(), budget_tokens: z.number().optional() }).optional(),
  tools: z.array(tool).optional(),
  tool_choice: toolChoice.optional(),
});

export type MessagesRequest = z.output<typeof messagesRequestSchema>;
type ContentBlock = z.output<typeof contentBlock>;
type ToolResultBlock = z.output<typeof toolResultBlock>;

/** Parses a request body; any violation is a 400 naming the field, Anthropic style (`messages.0.content`). */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  const result = messagesRequestSchema.safeParse(body);
  if (result.success) return result.data;
  const issue = mostSpecific(result.error.issues[0]!);
  const path = issue.path.map(String).join(".");
  throw badRequest(path ? `${path}: ${issue.message}` : issue.message, path || null);
}

// A union (string or blocks) reports "Invalid input" at its own path; the branch that got
// furthest into the value says what is actually wrong.
function mostSpecific(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue;
  const candidates = issue.errors.flat().map((inner) => mostSpecific({ ...inner, path: [...issue.path, ...inner.path] }));
  return candidates.reduce((best, c) => (c.path.length > best.path.length ? c : best), issue);
}

/** What the translation needs to know of the model registry. */
export interface ModelInfo {
  id: string;
  isReasoner: boolean;
  maxMaxTokens: number;
}

export const DEFAULT_MODEL = "deepseek-chat";

export function resolveModel(request: MessagesRequest, models: readonly ModelInfo[]): string {
  if (models.some((model) => model.id === request.model)) return request.model;
  const wantsThinking = request.thinking?.type === "enabled" && !request.tools?.length;
  const reasoner = wantsThinking ? models.find((model) => model.isReasoner) : undefined;
  return reasoner?.id ?? DEFAULT_MODEL;
}

type TextPart = { type: "text"; text: string };
type ToolCall = { id: string; type: "function"; function: { name: string; arguments: string } };

export type ChatMessage =
  | { role: "system"; content: TextPart[] }
  | { role: "user"; content: TextPart[] }
  | { role: "assistant"; content: TextPart[] | null; tool_calls?: ToolCall[]; prefix?: true; reasoning_content?: string }
  | { role: "tool"; tool_call_id: string; content: TextPart[] };

/** The OpenAI chat body that the chat pipeline validates (validation/chat-schema.ts). */
export interface ChatBody {
  model: string;
  messages: ChatMessage[];
  max_tokens: number;
  stream: boolean;
  temperature?: number;
  top_p?: number;
  stop?: string[];
  tools?: { type: "function"; function: { name: string; description?: string; parameters: Record<string, unknown> } }[];
  tool_choice?: "none" | "auto" | "required" | { type: "function"; function: { name: string } };
}

export function toChatBody(request: MessagesRequest, models: readonly ModelInfo[]): ChatBody {
  const modelId = resolveModel(request, models);
  const model = models.find((m) => m.id === modelId);
  const body: ChatBody = {
    model: modelId,
    messages: [...systemMessages(request.system), ...conversation(request.messages, model?.isReasoner ?? false)],
    max_tokens: model ? Math.min(request.max_tokens, model.maxMaxTokens) : request.max_tokens,
    stream: request.stream ?? false,
  };
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.top_p !== undefined) body.top_p = request.top_p;
  if (request.stop_sequences?.length) body.stop = request.stop_sequences;
  if (request.tools?.length) {
    body.tools = request.tools.map((t) => ({
      type: "function",
      function: { name: t.name, ...(t.description !== undefined ? { description: t.description } : {}), parameters: t.input_schema },
    }));
  }
  if (request.tool_choice) body.tool_choice = toolChoiceOf(request.tool_choice);
  return body;
}

function toolChoiceOf(choice: NonNullable<MessagesRequest["tool_choice"]>): NonNullable<ChatBody["tool_choice"]> {
  switch (choice.type) {
    case "none":
      return "none";
    case "auto":
      return "auto";
    case "any":
      return "required";
    case "tool":
      return { type: "function", function: { name: choice.name } };
  }
}

const text = (value: string): TextPart => ({ type: "text", text: value });

function systemMessages(system: MessagesRequest["system"]): ChatMessage[] {
  if (system === undefined) return [];
  const parts = typeof system === "string" ? [text(system)] : system.map((block) => text(block.text));
  return parts.length > 0 ? [{ role: "system", content: parts }] : [];
}

interface Turn {
  role: "user" | "assistant";
  blocks: ContentBlock[];
  index: number;
}

function mergeTurns(messages: MessagesRequest["messages"]): Turn[] {
  const turns: Turn[] = [];
  messages.forEach((m, index) => {
    const blocks: ContentBlock[] = typeof m.content === "string" ? [{ type: "text", text: m.content }] : m.content;
    const previous = turns.at(-1);
    if (previous?.role === m.role) previous.blocks.push(...blocks);
    else turns.push({ role: m.role, blocks: [...blocks], index });
  });
  return turns;
}

function conversation(messages: MessagesRequest["messages"], isReasoner: boolean): ChatMessage[] {
  const turns = mergeTurns(messages);
  return turns.flatMap((turn, i) =>
    turn.role === "user" ? userTurn(turn) : assistantTurn(turn, { prefill: i === turns.length - 1, isReasoner }),
  );
}

function misplaced(turn: Turn, type: string): never {
  throw badRequest(`messages.${turn.index}.content: ${type} blocks are not allowed in ${turn.role} messages`, `messages.${turn.index}.content`);
}

// Tool results answer the previous assistant turn, so they come first, as tool messages.
function userTurn(turn: Turn): ChatMessage[] {
  const results: ChatMessage[] = [];
  const parts: TextPart[] = [];
  for (const block of turn.blocks) {
    if (block.type === "tool_result") results.push({ role: "tool", tool_call_id: block.tool_use_id, content: toolResultContent(block) });
    else if (block.type === "text") parts.push(text(block.text));
    else misplaced(turn, block.type);
  }
  return parts.length > 0 ? [...results, { role: "user", content: parts }] : results;
}

function toolResultContent(block: ToolResultBlock): TextPart[] {
  if (block.content === undefined) return [text("")];
  if (typeof block.content === "string") return [text(block.content)];
  const parts = block.content.flatMap((b) => (b.type === "text" ? [text(b.text)] : []));
  return parts.length > 0 ? parts : [text("")];
}

function assistantTurn(turn: Turn, { prefill, isReasoner }: { prefill: boolean; isReasoner: boolean }): ChatMessage[] {
  const parts: TextPart[] = [];
  const toolCalls: ToolCall[] = [];
  let thinking = "";
  for (const block of turn.blocks) {
    if (block.type === "text") parts.push(text(block.text));
    else if (block.type === "tool_use") {
      toolCalls.push({ id: block.id, type: "function", function: { name: block.name, arguments: JSON.stringify(block.input) } });
    } else if (block.type === "thinking") thinking += block.thinking;
    else if (block.type !== "redacted_thinking") misplaced(turn, block.type);
  }
  const message: ChatMessage = { role: "assistant", content: parts.length > 0 ? parts : toolCalls.length > 0 ? null : [text("")] };
  if (toolCalls.length > 0) message.tool_calls = toolCalls;
  else if (prefill) {
    message.prefix = true;
    if (isReasoner && thinking) message.reasoning_content = thinking;
  }
  return [message];
}

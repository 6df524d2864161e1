// Prompt text for chat and FIM requests: DeepSeek-V3's chat template written out as code, plus
// our rules for what it leaves open (README.md in this folder). gpu-worker/gpu_worker/prompt/
// implements the same; test/fixtures/tokenizer/vectors.json holds both to the jinja template.
// The template's quirks are kept on purpose: tool-call and tool-output state is never reset
// between messages, and assistant text after tool outputs gets no <｜Assistant｜> marker.

export const BOS = "<｜begin▁of▁sentence｜>";
export const EOS = "<｜end▁of▁sentence｜>";
const USER = "<｜User｜>";
const ASSISTANT = "<｜Assistant｜>";
const TOOL_CALLS_BEGIN = "<｜tool▁calls▁begin｜>";
const TOOL_CALLS_END = "<｜tool▁calls▁end｜>";
const TOOL_CALL_BEGIN = "<｜tool▁call▁begin｜>";
const TOOL_CALL_END = "<｜tool▁call▁end｜>";
const TOOL_SEP = "<｜tool▁sep｜>";
const TOOL_OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>";
const TOOL_OUTPUTS_END = "<｜tool▁outputs▁end｜>";
const TOOL_OUTPUT_BEGIN = "<｜tool▁output▁begin｜>";
const TOOL_OUTPUT_END = "<｜tool▁output▁end｜>";
const FIM_BEGIN = "<｜fim▁begin｜>";
const FIM_HOLE = "<｜fim▁hole｜>";
const FIM_END = "<｜fim▁end｜>";

export const REASONER_MODEL = "deepseek-reasoner";

export const TOOLS_HEADER =
  "## Tools\nYou can call the following functions. Each function is described by one JSON object per line.";

/** Message content: a string, or text parts (other part types carry no text). */
export type MessageContent = string | null | undefined | ReadonlyArray<{ type: string; text?: string }>;

/** A request message, shaped like the DeepSeek/OpenAI request body (extra fields are ignored). */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | string;
  content?: MessageContent;
  name?: string;
  tool_calls?: ReadonlyArray<{ id?: string; type?: string; function: { name: string; arguments?: unknown } }> | null;
  tool_call_id?: string;
  prefix?: boolean;
  reasoning_content?: string | null;
}

export interface ChatPromptOptions {
  /** The request's `tools`, exactly as the gateway forwards them. */
  tools?: ReadonlyArray<unknown> | null;
  /** deepseek-reasoner opens its thinking with "<think>\n". */
  model?: string;
}

interface TemplateMessage {
  role: string;
  content: string | null;
  toolCalls: { type: string; name: string; arguments: string }[];
}

export function textContent(content: MessageContent): string | null {
  if (content === null || content === undefined || typeof content === "string") return content ?? null;
  let text = "";
  for (const part of content) if (part && part.type === "text") text += part.text ?? "";
  return text;
}

function normalize(message: ChatMessage): TemplateMessage {
  let content = textContent(message.content);
  const toolCalls =
    message.role === "assistant"
      ? (message.tool_calls ?? []).map((call) => ({
          type: call.type || "function",
          name: call.function?.name || "",
          arguments: typeof call.function?.arguments === "string" ? call.function.arguments : call.function?.arguments == null ? "" : JSON.stringify(call.function.arguments),
        }))
      : [];
  if (message.role === "assistant") {
    // Clients send "" (or nothing) beside tool calls; the template renders calls only for null.
    if (toolCalls.length > 0 && !content) content = null;
    else if (content === null && toolCalls.length === 0) content = "";
  } else if (content === null) {
    content = "";
  }
  return { role: message.role, content, toolCalls };
}

/** DeepSeek-V3's chat_template with add_generation_prompt, for normalized messages. */
function renderTemplate(messages: TemplateMessage[]): string {
  let out = BOS;
  let first = true;
  for (const m of messages) {
    if (m.role !== "system") continue;
    out += first ? m.content : "\n\n" + m.content;
    first = false;
  }
  let isFirst = false; // a tool call was rendered (never reset, as in the template)
  let isTool = false; // inside a run of tool outputs
  let isOutputFirst = true; // no tool output rendered yet (never reset, as in the template)
  for (const m of messages) {
    if (m.role === "user") {
      isTool = false;
      out += USER + m.content;
    } else if (m.role === "assistant" && m.content === null) {
      isTool = false;
      for (const call of m.toolCalls) {
        const rendered = TOOL_CALL_BEGIN + call.type + TOOL_SEP + call.name + "\n```json\n" + call.arguments + "\n```" + TOOL_CALL_END;
        if (!isFirst) {
          out += ASSISTANT + TOOL_CALLS_BEGIN + rendered;
          isFirst = true;
        } else {
          out += "\n" + rendered + TOOL_CALLS_END + EOS;
        }
      }
    } else if (m.role === "assistant") {
      if (isTool) {
        out += TOOL_OUTPUTS_END + m.content + EOS;
        isTool = false;
      } else {
        out += ASSISTANT + m.content + EOS;
      }
    } else if (m.role === "tool") {
      isTool = true;
      if (isOutputFirst) {
        out += TOOL_OUTPUTS_BEGIN + TOOL_OUTPUT_BEGIN + m.content + TOOL_OUTPUT_END;
        isOutputFirst = false;
      } else {
        out += "\n" + TOOL_OUTPUT_BEGIN + m.content + TOOL_OUTPUT_END;
      }
    }
  }
  if (isTool) out += TOOL_OUTPUTS_END;
  else out += ASSISTANT;
  return out;
}

/** Tool definitions as the last part of the system prompt: a header, then one JSON object per line. */
export function renderToolsPrompt(tools: ReadonlyArray<unknown>): string {
  return TOOLS_HEADER + "\n" + tools.map((tool) => JSON.stringify(tool)).join("\n");
}

/** The prompt text of a chat request (with chat prefix completion when the last message has prefix: true). */
export function renderChatPrompt(messages: ReadonlyArray<ChatMessage>, options: ChatPromptOptions = {}): string {
  const reasoner = options.model === REASONER_MODEL;
  const last = messages[messages.length - 1];
  const prefix = last && last.role === "assistant" && last.prefix ? last : undefined;
  const history = (prefix ? messages.slice(0, -1) : messages).map(normalize);
  if (options.tools && options.tools.length > 0) {
    history.push({ role: "system", content: renderToolsPrompt(options.tools), toolCalls: [] });
  }
  let text = renderTemplate(history);
  if (reasoner) text += "<think>\n";
  if (prefix) {
    if (reasoner) text += (prefix.reasoning_content ?? "") + "\n</think>\n\n";
    text += textContent(prefix.content) ?? "";
  }
  return text;
}

/** The prompt text of a FIM request (/beta/completions). */
export function renderFimPrompt(prompt: string, suffix?: string | null): string {
  return BOS + FIM_BEGIN + (prompt ?? "") + FIM_HOLE + (suffix ?? "") + FIM_END;
}

// Non-streaming responses of /anthropic/v1/messages: the stream's events (events.ts) folded
// into one Anthropic message, so both modes share one translation of the worker's chunks.
import type { ResponseEncoder, WireUsage } from "../inference/encoder";
import { anthropicErrorResponse, INCOMPLETE_RESPONSE } from "./errors";
import { type AnthropicEvent, type AnthropicUsage, MessageEventTranscoder, type StopReason } from "./events";

export type ContentBlock =
  | { type: "thinking"; thinking: string; signature: string }
  | { type: "text"; text: string }
  | { type: "tool_use"; id: string; name: string; input: Record<string, unknown> };

export interface AnthropicMessage {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: ContentBlock[];
  stop_reason: StopReason | null;
  stop_sequence: string | null;
  usage: AnthropicUsage;
}

/** Folds a complete event sequence into the message it describes. */
export function foldEvents(events: Iterable<AnthropicEvent>): AnthropicMessage | null {
  let message: AnthropicMessage | null = null;
  const toolJson = new Map<number, string>();
  for (const event of events) {
    switch (event.type) {
      case "message_start":
        message = { ...event.message, content: [] };
        break;
      case "content_block_start":
        message!.content[event.index] = { ...event.content_block };
        break;
      case "content_block_delta": {
        const block = message!.content[event.index]!;
        const delta = event.delta;
        if (delta.type === "text_delta" && block.type === "text") block.text += delta.text;
        else if (delta.type === "thinking_delta" && block.type === "thinking") block.thinking += delta.thinking;
        else if (delta.type === "input_json_delta") toolJson.set(event.index, (toolJson.get(event.index) ?? "") + delta.partial_json);
        break;
      }
      case "content_block_stop": {
        const block = message!.content[event.index]!;
        if (block.type === "tool_use") block.input = parseToolInput(toolJson.get(event.index) ?? "");
        break;
      }
      case "message_delta":
        message!.stop_reason = event.delta.stop_reason;
        message!.stop_sequence = event.delta.stop_sequence;
        message!.usage = event.usage;
        break;
      case "message_stop":
        break;
    }
  }
  return message;
}

// tool_use.input must be an object; arguments that are not a JSON object are kept, not lost.
function parseToolInput(json: string): Record<string, unknown> {
  if (json.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(json);
    if (value !== null && typeof value === "object" && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // fall through
  }
  return { arguments: json };
}

export class AnthropicJsonEncoder implements ResponseEncoder {
  readonly contentType = "application/json";
  private readonly transcoder: MessageEventTranscoder;
  private readonly events: AnthropicEvent[] = [];

  constructor(id: string, model: string, stopSequences: readonly string[] = []) {
    this.transcoder = new MessageEventTranscoder(id, model, stopSequences);
  }

  keepAlive(): string {
    return "\n";
  }

  chunk(chunk: any, usage: WireUsage | null): string {
    this.events.push(...this.transcoder.chunk(chunk, usage));
    return "";
  }

  finish(usage: WireUsage | null): string {
    if (!this.transcoder.finished) return this.fail(usage);
    this.events.push(...this.transcoder.finish(usage));
    return JSON.stringify(foldEvents(this.events));
  }

  // The status line is already sent (keep-alive bytes may have gone out), so the failure is
  // reported in the body, in Anthropic's error shape.
  fail(_usage: WireUsage | null): string {
    return JSON.stringify(INCOMPLETE_RESPONSE);
  }

  errorResponse = anthropicErrorResponse;
}

// OpenAI chat.completion.chunk objects -> Anthropic Messages stream events. The one place that
// knows how chunks become content blocks: the streaming encoder writes these events as SSE,
// the non-streaming one folds them into a message (response.ts).
//
// A chunk's delta becomes a block of its kind: reasoning_content -> thinking, content -> text,
// each tool call (by its index) -> tool_use with its arguments as input_json_delta. A change of
// kind closes the open block. message_start waits for the first chunk, whose cumulative usage
// gives the exact prompt split (cache hits and misses).
import type { WireUsage } from "../inference/encoder";

export type StopReason = "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "refusal";

export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
}

export type ContentBlockStart =
  | { type: "thinking"; thinking: ""; signature: "" }
  | { type: "text"; text: "" }
  | { type: "tool_use"; id: string; name: string; input: Record<string, never> };

export type ContentDelta =
  | { type: "thinking_delta"; thinking: string }
  | { type: "text_delta"; text: string }
  | { type: "input_json_delta"; partial_json: string };

export interface MessageStart {
  id: string;
  type: "message";
  role: "assistant";
  model: string;
  content: [];
  stop_reason: null;
  stop_sequence: null;
  usage: AnthropicUsage;
}

export type AnthropicEvent =
  | { type: "message_start"; message: MessageStart }
  | { type: "content_block_start"; index: number; content_block: ContentBlockStart }
  | { type: "content_block_delta"; index: number; delta: ContentDelta }
  | { type: "content_block_stop"; index: number }
  | { type: "message_delta"; delta: { stop_reason: StopReason; stop_sequence: string | null }; usage: AnthropicUsage }
  | { type: "message_stop" };

/**
 * Anthropic counts input apart from cache reads (input = input_tokens + cache reads), so a
 * cache miss is `input_tokens` and a hit `cache_read_input_tokens`. Nothing is billed as a
 * cache write on this platform.
 */
export function anthropicUsage(usage: WireUsage | null): AnthropicUsage {
  return {
    input_tokens: usage?.prompt_cache_miss_tokens ?? usage?.prompt_tokens ?? 0,
    output_tokens: usage?.completion_tokens ?? 0,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: usage?.prompt_cache_hit_tokens ?? 0,
  };
}

/**
 * finish_reason -> stop_reason. The returned text never contains a matched stop sequence, so
 * which one matched is known only if the worker says so in `stop_reason` (vLLM's field: the
 * matched string, or a token id for EOS).
 */
export function stopReasonOf(finishReason: string, workerStopReason: unknown, stopSequences: readonly string[]): { stop_reason: StopReason; stop_sequence: string | null } | null {
  switch (finishReason) {
    case "stop":
      if (typeof workerStopReason === "string" && stopSequences.includes(workerStopReason)) {
        return { stop_reason: "stop_sequence", stop_sequence: workerStopReason };
      }
      return { stop_reason: "end_turn", stop_sequence: null };
    case "length":
      return { stop_reason: "max_tokens", stop_sequence: null };
    case "tool_calls":
      return { stop_reason: "tool_use", stop_sequence: null };
    case "content_filter":
      return { stop_reason: "refusal", stop_sequence: null };
    default:
      return null; // insufficient_system_resource and anything unknown: the request failed
  }
}

type OpenBlock = { kind: "thinking" | "text"; index: number } | { kind: "tool_use"; index: number; toolIndex: number };

export class MessageEventTranscoder {
  private started = false;
  private open: OpenBlock | null = null;
  private blockCount = 0;
  private stop: { stop_reason: StopReason; stop_sequence: string | null } | null = null;

  constructor(
    private readonly id: string,
    private readonly model: string,
    private readonly stopSequences: readonly string[] = [],
  ) {}

  /** Whether the upstream reported a normal finish (a stop_reason is known). */
  get finished(): boolean {
    return this.stop !== null;
  }

  chunk(chunk: any, usage: WireUsage | null): AnthropicEvent[] {
    const events: AnthropicEvent[] = [];
    if (!this.started) {
      this.started = true;
      events.push({ type: "message_start", message: this.startMessage(usage) });
    }
    const choice = chunk?.choices?.[0];
    if (!choice) return events;
    const delta = choice.delta ?? {};
    if (typeof delta.reasoning_content === "string" && delta.reasoning_content !== "") {
      this.into({ kind: "thinking" }, events);
      events.push({ type: "content_block_delta", index: this.open!.index, delta: { type: "thinking_delta", thinking: delta.reasoning_content } });
    }
    if (typeof delta.content === "string" && delta.content !== "") {
      this.into({ kind: "text" }, events);
      events.push({ type: "content_block_delta", index: this.open!.index, delta: { type: "text_delta", text: delta.content } });
    }
    for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
      const toolIndex = Number(call.index ?? 0);
      this.into({ kind: "tool_use", toolIndex, id: call.id ?? `toolu_${this.id}_${toolIndex}`, name: call.function?.name ?? "" }, events);
      const fragment = call.function?.arguments;
      if (typeof fragment === "string" && fragment !== "") {
        events.push({ type: "content_block_delta", index: this.open!.index, delta: { type: "input_json_delta", partial_json: fragment } });
      }
    }
    if (choice.finish_reason) this.stop = stopReasonOf(choice.finish_reason, choice.stop_reason, this.stopSequences);
    return events;
  }

  /** The upstream ended normally: close the open block and the message. Call only when `finished`. */
  finish(usage: WireUsage | null): AnthropicEvent[] {
    const events: AnthropicEvent[] = [];
    if (!this.started) {
      this.started = true;
      events.push({ type: "message_start", message: this.startMessage(usage) });
    }
    this.close(events);
    const stop = this.stop ?? { stop_reason: "end_turn" as const, stop_sequence: null };
    events.push({ type: "message_delta", delta: stop, usage: anthropicUsage(usage) });
    events.push({ type: "message_stop" });
    return events;
  }

  private startMessage(usage: WireUsage | null): MessageStart {
    return {
      id: this.id,
      type: "message",
      role: "assistant",
      model: this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: anthropicUsage(usage),
    };
  }

  private into(
    target: { kind: "thinking" | "text" } | { kind: "tool_use"; toolIndex: number; id: string; name: string },
    events: AnthropicEvent[],
  ): void {
    const open = this.open;
    if (open && open.kind === target.kind && (open.kind !== "tool_use" || (target.kind === "tool_use" && open.toolIndex === target.toolIndex))) return;
    this.close(events);
    const index = this.blockCount++;
    let contentBlock: ContentBlockStart;
    if (target.kind === "tool_use") {
      contentBlock = { type: "tool_use", id: target.id, name: target.name, input: {} };
      this.open = { kind: "tool_use", index, toolIndex: target.toolIndex };
    } else {
      contentBlock = target.kind === "thinking" ? { type: "thinking", thinking: "", signature: "" } : { type: "text", text: "" };
      this.open = { kind: target.kind, index };
    }
    events.push({ type: "content_block_start", index, content_block: contentBlock });
  }

  private close(events: AnthropicEvent[]): void {
    if (!this.open) return;
    events.push({ type: "content_block_stop", index: this.open.index });
    this.open = null;
  }
}

// Streaming responses of /anthropic/v1/messages: Anthropic's server-sent events
// (`event: <type>\ndata: <json>\n\n`), ping while the request waits for the worker, and an
// `error` event when the worker fails after the stream has started.
import type { ResponseEncoder, WireUsage } from "../inference/encoder";
import { anthropicErrorResponse, INCOMPLETE_RESPONSE } from "./errors";
import { type AnthropicEvent, MessageEventTranscoder } from "./events";

export function sseEvent(event: AnthropicEvent | { type: "ping" } | typeof INCOMPLETE_RESPONSE): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`;
}

export class AnthropicStreamEncoder implements ResponseEncoder {
  readonly contentType = "text/event-stream; charset=utf-8";
  private readonly events: MessageEventTranscoder;
  private ended = false;

  constructor(id: string, model: string, stopSequences: readonly string[] = []) {
    this.events = new MessageEventTranscoder(id, model, stopSequences);
  }

  keepAlive(): string {
    return this.ended ? "" : sseEvent({ type: "ping" });
  }

  chunk(chunk: any, usage: WireUsage | null): string {
    if (this.ended) return "";
    return this.events.chunk(chunk, usage).map(sseEvent).join("");
  }

  finish(usage: WireUsage | null): string {
    if (!this.events.finished) return this.fail(usage);
    if (this.ended) return "";
    this.ended = true;
    return this.events.finish(usage).map(sseEvent).join("");
  }

  fail(_usage: WireUsage | null): string {
    if (this.ended) return "";
    this.ended = true;
    return sseEvent(INCOMPLETE_RESPONSE);
  }

  errorResponse = anthropicErrorResponse;
}

// OpenAI-style SSE streams (chat.completion.chunk and text_completion), passed through chunk by
// chunk. Usage rides on the chunk with `finish_reason`; with `stream_options.include_usage` every
// other chunk carries `"usage": null`. A worker failing mid-stream ends the stream with one
// last chunk whose finish_reason is `insufficient_system_resource`, then `[DONE]`.
import { errorResponse } from "../errors/error-handler";
import type { ResponseEncoder, WireUsage } from "./encoder";

const sse = (payload: unknown) => `data: ${JSON.stringify(payload)}\n\n`;

export class OpenAiStreamEncoder implements ResponseEncoder {
  readonly contentType = "text/event-stream; charset=utf-8";
  private created = Math.floor(Date.now() / 1000);
  private fingerprint: string | undefined;
  private finished = false;

  constructor(
    private readonly object: "chat.completion.chunk" | "text_completion",
    private readonly includeUsage: boolean,
    private readonly model: string,
    private readonly id: string,
  ) {}

  keepAlive() {
    return ": keep-alive\n\n";
  }

  chunk(chunk: any, usage: WireUsage | null): string {
    if (!Array.isArray(chunk?.choices) || chunk.choices.length === 0) return ""; // usage-only trailer: merged below
    if (typeof chunk.created === "number") this.created = chunk.created;
    this.fingerprint ??= chunk.system_fingerprint;
    const hasFinish = chunk.choices.some((c: any) => c.finish_reason);
    if (hasFinish) this.finished = true;
    const out: any = { ...chunk, id: this.id, object: this.object, model: this.model };
    delete out.usage;
    if (hasFinish) out.usage = usage;
    else if (this.includeUsage) out.usage = null;
    return sse(out);
  }

  finish(usage: WireUsage | null): string {
    return this.finished ? "data: [DONE]\n\n" : this.fail(usage);
  }

  fail(usage: WireUsage | null): string {
    const choice =
      this.object === "text_completion"
        ? { index: 0, text: "", logprobs: null, finish_reason: "insufficient_system_resource" }
        : { index: 0, delta: {}, logprobs: null, finish_reason: "insufficient_system_resource" };
    const chunk: Record<string, unknown> = { id: this.id, object: this.object, created: this.created, model: this.model };
    if (this.fingerprint) chunk.system_fingerprint = this.fingerprint;
    chunk.choices = [choice];
    chunk.usage = usage;
    return `${sse(chunk)}data: [DONE]\n\n`;
  }

  errorResponse = errorResponse;
}

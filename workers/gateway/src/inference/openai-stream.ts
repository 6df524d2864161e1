// OpenAI-style SSE streams (chat.completion.chunk and text_completion), passed through chunk by
// chunk. Usage rides on the chunk with `finish_reason`; with `stream_options.include_usage` every
// other chunk carries `"usage": null`. A worker failing mid-stream ends the stream with one
// last chunk whose finish_reason is `insufficient_system_resource`, then `[DONE]`.
import { errorResponse } from "../errors/error-handler";
import type { ResponseEncoder, WireUsage } from "./encoder";

const sse = (payload: unknown) => `data: ${JSON.stringify(payload)}\n\n`;

const DELTA_FIELDS = ["role", "content", "reasoning_content", "tool_calls"] as const;

function chatChoice(choice: any) {
  const delta: Record<string, unknown> = {};
  for (const field of DELTA_FIELDS) if (choice.delta?.[field] !== undefined) delta[field] = choice.delta[field];
  return { index: choice.index ?? 0, delta, logprobs: choice.logprobs ?? null, finish_reason: choice.finish_reason ?? null };
}

const textChoice = (choice: any) => ({ index: choice.index ?? 0, text: choice.text ?? "", logprobs: choice.logprobs ?? null, finish_reason: choice.finish_reason ?? null });

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
    // Only the contract's fields reach the client: an engine's own (stop_reason, ...) stay here.
    const out: any = { id: this.id, object: this.object, created: this.created, model: this.model };
    if (this.fingerprint !== undefined) out.system_fingerprint = this.fingerprint;
    out.choices = chunk.choices.map(this.object === "text_completion" ? textChoice : chatChoice);
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

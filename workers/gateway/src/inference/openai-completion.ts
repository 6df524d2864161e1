// OpenAI-compatible text completions (FIM under /beta/completions) aggregated into one
// `text_completion` (non-streaming clients; streams go through openai-stream.ts).
import { errorResponse } from "../errors/error-handler";
import type { ResponseEncoder, WireUsage } from "./encoder";

export class CompletionJsonEncoder implements ResponseEncoder {
  readonly contentType = "application/json";
  private text = "";
  private logprobs: { tokens: string[]; token_logprobs: number[]; top_logprobs: unknown[]; text_offset: number[] } | null = null;
  private finishReason: string | null = null;
  private created = Math.floor(Date.now() / 1000);

  constructor(
    private readonly model: string,
    private readonly id: string,
  ) {}

  keepAlive() {
    return "\n";
  }

  chunk(chunk: any): string {
    if (typeof chunk?.created === "number") this.created = chunk.created;
    const choice = chunk?.choices?.[0];
    if (!choice) return "";
    if (typeof choice.text === "string") this.text += choice.text;
    const lp = choice.logprobs;
    if (lp?.tokens) {
      this.logprobs ??= { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
      this.logprobs.tokens.push(...lp.tokens);
      this.logprobs.token_logprobs.push(...(lp.token_logprobs ?? []));
      this.logprobs.top_logprobs.push(...(lp.top_logprobs ?? []));
      this.logprobs.text_offset.push(...(lp.text_offset ?? []));
    }
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    return "";
  }

  private body(usage: WireUsage | null, finishReason: string) {
    return JSON.stringify({
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      choices: [{ index: 0, text: this.text, logprobs: this.logprobs, finish_reason: finishReason }],
      usage,
    });
  }

  finish(usage: WireUsage | null) {
    return this.body(usage, this.finishReason ?? "insufficient_system_resource");
  }

  fail(usage: WireUsage | null) {
    return this.body(usage, "insufficient_system_resource");
  }

  errorResponse = errorResponse;
}

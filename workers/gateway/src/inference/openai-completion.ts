// OpenAI-compatible text completions (FIM under /beta/completions) aggregated into one
// `text_completion` (non-streaming clients; streams go through openai-stream.ts).
import { AggregatingEncoder } from "./aggregating-encoder";
import type { WireUsage } from "./encoder";

export class CompletionJsonEncoder extends AggregatingEncoder {
  private text = "";
  private logprobs: { tokens: string[]; token_logprobs: number[]; top_logprobs: unknown[]; text_offset: number[] } | null = null;

  protected absorb(choice: any): void {
    if (typeof choice.text === "string") this.text += choice.text;
    const lp = choice.logprobs;
    if (lp?.tokens) {
      this.logprobs ??= { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
      this.logprobs.tokens.push(...lp.tokens);
      this.logprobs.token_logprobs.push(...(lp.token_logprobs ?? []));
      this.logprobs.top_logprobs.push(...(lp.top_logprobs ?? []));
      this.logprobs.text_offset.push(...(lp.text_offset ?? []));
    }
  }

  protected body(usage: WireUsage | null, finishReason: string) {
    return JSON.stringify({
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      choices: [{ index: 0, text: this.text, logprobs: this.logprobs, finish_reason: finishReason }],
      usage,
    });
  }
}

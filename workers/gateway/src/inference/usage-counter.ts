// What a request is charged, from what the client received. The upstream's cumulative usage is
// trusted while it keeps up with the text: once text arrives that no usage covers (an engine that
// reports no usage, or stops reporting it), the gateway counts the completion itself with its
// exact tokenizer over the text it delivered (content, reasoning_content, tool call names and
// arguments, FIM text) and the prompt with the count it already has. Either way the usage row
// records where the counts came from.
import type { UsageSource } from "../billing/settlement";
import { loadTokenizer } from "../tokenizer";
import type { WireUsage } from "./encoder";

export type Outcome = "ok" | "aborted" | "failed";

interface Text {
  completion: string;
  reasoning: string;
}

export class UsageCounter {
  // Cumulative usage of the last upstream chunk that carried one.
  private latest: WireUsage | null = null;
  // Usage as of the last chunk the client was sent (streams).
  private delivered: WireUsage | null = null;
  private readonly text: Text = { completion: "", reasoning: "" };
  private sentText: Text = { completion: "", reasoning: "" };
  // Text arrived that no usage since covers; as of the last chunk sent.
  private uncovered = false;
  private sentUncovered = false;
  private chunks = 0;
  // The gateway's count of the last text counted: the last chunk, the response end and the
  // settlement share one count.
  private lastCount: { key: string; usage: WireUsage } | null = null;

  // `promptTokens`: the gateway's exact count of the prompt.
  constructor(private readonly promptTokens: number) {}

  // Every upstream chunk, in order, with its usage already read.
  add(chunk: any, usage: WireUsage | null): void {
    this.chunks++;
    if (usage) this.latest = usage;
    const before = this.text.completion.length + this.text.reasoning.length;
    for (const choice of Array.isArray(chunk?.choices) ? chunk.choices : []) {
      if (typeof choice?.text === "string") this.text.completion += choice.text;
      const delta = choice?.delta;
      if (!delta) continue;
      if (typeof delta.content === "string") this.text.completion += delta.content;
      if (typeof delta.reasoning_content === "string") this.text.reasoning += delta.reasoning_content;
      for (const call of Array.isArray(delta.tool_calls) ? delta.tool_calls : []) {
        if (typeof call?.function?.name === "string") this.text.completion += call.function.name;
        if (typeof call?.function?.arguments === "string") this.text.completion += call.function.arguments;
      }
    }
    if (usage) this.uncovered = false;
    else if (this.text.completion.length + this.text.reasoning.length > before) this.uncovered = true;
  }

  // The chunks added so far have been sent to the client.
  sent(): void {
    this.delivered = this.latest;
    this.sentText = { ...this.text };
    this.sentUncovered = this.uncovered;
  }

  // The usage to show with `chunk` (the chunk with finish_reason carries it; Anthropic's
  // message_start shows the prompt): the upstream's, or the gateway's own, its completion counted
  // only on the finishing chunk.
  forChunk(chunk: any): WireUsage | null {
    const finishing = Array.isArray(chunk?.choices) && chunk.choices.some((c: any) => c?.finish_reason);
    if (finishing && (this.uncovered || !this.latest)) return this.counted(this.text);
    return this.latest ?? this.counted({ completion: "", reasoning: "" });
  }

  // What the request is charged: everything on success; otherwise the prompt (the worker did
  // process it) plus only the completion the client actually received. Null: nothing came from
  // the upstream at all, so nothing is charged.
  charged(outcome: Outcome): { usage: WireUsage; source: UsageSource } | null {
    if (this.chunks === 0) return null;
    if (outcome === "ok") {
      return !this.uncovered && this.latest ? { usage: this.latest, source: "upstream" } : { usage: this.counted(this.text), source: "gateway" };
    }
    if (this.sentUncovered || !this.latest) return { usage: this.counted(this.sentText), source: "gateway" };
    const completion = this.delivered?.completion_tokens ?? 0;
    const reasoning = Math.min(this.delivered?.completion_tokens_details.reasoning_tokens ?? 0, completion);
    return {
      usage: { ...this.latest, completion_tokens: completion, total_tokens: this.latest.prompt_tokens + completion, completion_tokens_details: { reasoning_tokens: reasoning } },
      source: "upstream",
    };
  }

  // The gateway's own count: the prompt as counted at the edge (its cache hits as the upstream
  // last reported them, if it did), the completion by the tokenizer.
  private counted(text: Text): WireUsage {
    const key = `${text.completion.length}:${text.reasoning.length}`;
    if (this.lastCount?.key !== key) this.lastCount = { key, usage: this.count(text) };
    return this.lastCount.usage;
  }

  private count(text: Text): WireUsage {
    const tokenizer = loadTokenizer();
    const reasoning = text.reasoning === "" ? 0 : tokenizer.countTokens(text.reasoning);
    const completion = reasoning + (text.completion === "" ? 0 : tokenizer.countTokens(text.completion));
    const hit = Math.min(this.latest?.prompt_cache_hit_tokens ?? 0, this.promptTokens);
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: completion,
      total_tokens: this.promptTokens + completion,
      prompt_cache_hit_tokens: hit,
      prompt_cache_miss_tokens: this.promptTokens - hit,
      prompt_tokens_details: { cached_tokens: hit },
      completion_tokens_details: { reasoning_tokens: reasoning },
    };
  }
}

// OpenAI-compatible chat completions aggregated into one `chat.completion` (non-streaming
// clients; streams go through openai-stream.ts).
import { AggregatingEncoder } from "./aggregating-encoder";
import type { WireUsage } from "./encoder";

interface ToolCallAccumulator {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export class ChatJsonEncoder extends AggregatingEncoder {
  private content = "";
  private reasoning: string | null = null;
  private readonly toolCalls: ToolCallAccumulator[] = [];
  private logprobs: any[] | null = null;

  protected absorb(choice: any): void {
    const delta = choice.delta ?? {};
    if (typeof delta.content === "string") this.content += delta.content;
    if (typeof delta.reasoning_content === "string") this.reasoning = (this.reasoning ?? "") + delta.reasoning_content;
    for (const call of delta.tool_calls ?? []) {
      const slot = (this.toolCalls[call.index ?? 0] ??= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (call.id) slot.id = call.id;
      if (call.function?.name) slot.function.name += call.function.name;
      if (call.function?.arguments) slot.function.arguments += call.function.arguments;
    }
    if (choice.logprobs?.content) (this.logprobs ??= []).push(...choice.logprobs.content);
  }

  protected body(usage: WireUsage | null, finishReason: string) {
    const message: Record<string, unknown> = { role: "assistant", content: this.content };
    if (this.reasoning !== null) message.reasoning_content = this.reasoning;
    if (this.toolCalls.length > 0) message.tool_calls = this.toolCalls;
    return JSON.stringify({
      id: this.id,
      object: "chat.completion",
      created: this.created,
      model: this.model,
      system_fingerprint: this.fingerprint ?? null,
      choices: [{ index: 0, message, logprobs: this.logprobs ? { content: this.logprobs } : null, finish_reason: finishReason }],
      usage,
    });
  }
}

// OpenAI-compatible chat completions aggregated into one `chat.completion` (non-streaming
// clients; streams go through openai-stream.ts).
import { errorResponse } from "../errors/error-handler";
import type { ResponseEncoder, WireUsage } from "./encoder";

interface ToolCallAccumulator {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

export class ChatJsonEncoder implements ResponseEncoder {
  readonly contentType = "application/json";
  private content = "";
  private reasoning: string | null = null;
  private readonly toolCalls: ToolCallAccumulator[] = [];
  private logprobs: any[] | null = null;
  private finishReason: string | null = null;
  private created = Math.floor(Date.now() / 1000);
  private fingerprint: string | undefined;

  constructor(
    private readonly model: string,
    private readonly id: string,
  ) {}

  keepAlive() {
    return "\n";
  }

  chunk(chunk: any): string {
    if (typeof chunk?.created === "number") this.created = chunk.created;
    this.fingerprint ??= chunk?.system_fingerprint;
    const choice = chunk?.choices?.[0];
    if (!choice) return "";
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
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    return "";
  }

  private body(usage: WireUsage | null, finishReason: string) {
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

  finish(usage: WireUsage | null): string {
    return this.body(usage, this.finishReason ?? "insufficient_system_resource");
  }

  fail(usage: WireUsage | null): string {
    return this.body(usage, "insufficient_system_resource");
  }

  errorResponse = errorResponse;
}

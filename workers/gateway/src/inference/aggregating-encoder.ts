// The shared half of the non-streaming OpenAI encoders: the worker always streams, and these
// fold its chunks into one JSON body, written when the stream ends. While the request waits,
// empty lines keep the connection alive (JSON parsers skip leading whitespace).
import { errorResponse } from "../errors/error-handler";
import type { ResponseEncoder, WireUsage } from "./encoder";

export abstract class AggregatingEncoder implements ResponseEncoder {
  readonly contentType = "application/json";
  protected created = Math.floor(Date.now() / 1000);
  protected fingerprint: string | undefined;
  private finishReason: string | null = null;

  constructor(
    protected readonly model: string,
    protected readonly id: string,
  ) {}

  keepAlive() {
    return "\n";
  }

  chunk(chunk: any): string {
    if (typeof chunk?.created === "number") this.created = chunk.created;
    this.fingerprint ??= chunk?.system_fingerprint;
    const choice = chunk?.choices?.[0];
    if (!choice) return "";
    this.absorb(choice);
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
    return "";
  }

  finish(usage: WireUsage | null): string {
    return this.body(usage, this.finishReason ?? "insufficient_system_resource");
  }

  fail(usage: WireUsage | null): string {
    return this.body(usage, "insufficient_system_resource");
  }

  errorResponse = errorResponse;

  // Folds one upstream choice into what has been received so far.
  protected abstract absorb(choice: any): void;
  // The complete response body.
  protected abstract body(usage: WireUsage | null, finishReason: string): string;
}

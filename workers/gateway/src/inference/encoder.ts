// How one client protocol renders an inference: the pipeline (run-inference.ts) hands every
// upstream chunk to an encoder and writes what it returns. OpenAI chat, OpenAI completions and
// Anthropic messages each implement this once, streaming and not.
import type { ApiError } from "../errors/api-error";

export interface WireUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_cache_hit_tokens: number;
  prompt_cache_miss_tokens: number;
  // For generic OpenAI clients: the same count as prompt_cache_hit_tokens.
  prompt_tokens_details?: { cached_tokens: number };
  completion_tokens_details: { reasoning_tokens: number };
}

export interface ResponseEncoder {
  readonly contentType: string;
  // Written every few seconds while the worker has not started (SSE comment, empty line, ping).
  keepAlive(): string;
  // An upstream chunk with the cumulative usage so far; returns text to send now ("" for none).
  chunk(chunk: any, usage: WireUsage | null): string;
  // The upstream ended normally.
  finish(usage: WireUsage | null): string;
  // The upstream failed after the response had started: end the response cleanly.
  fail(usage: WireUsage | null): string;
  // A failure before anything was sent: a complete error response (status and body).
  errorResponse(error: ApiError, traceId: string): Response;
}

// Token usage as the GPU worker reports it (DeepSeek's usage fields), in one internal shape.
// completionTokens already includes reasoningTokens (completion_tokens_details.reasoning_tokens
// is a breakdown, as in the DeepSeek and OpenAI APIs), so reasoning is billed as output once.
export interface Usage {
  promptTokens: number;
  cacheHitTokens: number;
  cacheMissTokens: number;
  completionTokens: number;
  reasoningTokens: number;
}

export const ZERO_USAGE: Usage = { promptTokens: 0, cacheHitTokens: 0, cacheMissTokens: 0, completionTokens: 0, reasoningTokens: 0 };

function count(name: keyof Usage, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`usage.${name} must be a non-negative integer, got ${value}`);
  return value;
}

// Makes usage consistent for billing: prompt tokens not reported as hits are misses, and
// reasoning tokens (a part of completion tokens) are never billed below what was reported.
export function normalizeUsage(usage: Usage): Usage {
  const hit = count("cacheHitTokens", usage.cacheHitTokens);
  const prompt = Math.max(count("promptTokens", usage.promptTokens), hit + count("cacheMissTokens", usage.cacheMissTokens));
  const reasoning = count("reasoningTokens", usage.reasoningTokens);
  const completion = Math.max(count("completionTokens", usage.completionTokens), reasoning);
  return { promptTokens: prompt, cacheHitTokens: hit, cacheMissTokens: prompt - hit, completionTokens: completion, reasoningTokens: reasoning };
}

// The worker's wire usage object -> Usage.
export function usageFromWire(wire: any): Usage {
  return {
    promptTokens: Number(wire?.prompt_tokens ?? 0),
    cacheHitTokens: Number(wire?.prompt_cache_hit_tokens ?? 0),
    cacheMissTokens: Number(wire?.prompt_cache_miss_tokens ?? 0),
    completionTokens: Number(wire?.completion_tokens ?? 0),
    reasoningTokens: Number(wire?.completion_tokens_details?.reasoning_tokens ?? 0),
  };
}

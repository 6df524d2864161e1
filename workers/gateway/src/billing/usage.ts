// Token usage of one request as the GPU worker reports it (DeepSeek's usage fields).
// completionTokens already includes reasoningTokens (completion_tokens_details.reasoning_tokens
// is a breakdown, as in the DeepSeek and OpenAI APIs), so reasoning is billed as output once.
export interface Usage {
  promptTokens: number;
  cacheHitTokens: number;
  cacheMissTokens: number;
  completionTokens: number;
  reasoningTokens: number;
}

export const NO_USAGE: Usage = { promptTokens: 0, cacheHitTokens: 0, cacheMissTokens: 0, completionTokens: 0, reasoningTokens: 0 };

function count(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`usage.${name} must be a non-negative integer, got ${value}`);
  return value;
}

// Makes a reported usage self-consistent before it is priced and recorded: prompt tokens not
// accounted for as hits are misses (the dearer input price), and completion covers reasoning.
export function normalizeUsage(usage: Usage): Usage {
  const promptTokens = count("promptTokens", usage.promptTokens);
  const reasoningTokens = count("reasoningTokens", usage.reasoningTokens);
  const cacheHitTokens = Math.min(count("cacheHitTokens", usage.cacheHitTokens), promptTokens);
  const cacheMissTokens = Math.max(count("cacheMissTokens", usage.cacheMissTokens), promptTokens - cacheHitTokens);
  const completionTokens = Math.max(count("completionTokens", usage.completionTokens), reasoningTokens);
  return { promptTokens: cacheHitTokens + cacheMissTokens, cacheHitTokens, cacheMissTokens, completionTokens, reasoningTokens };
}

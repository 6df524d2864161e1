// A settlement: what one request delivered, as the pipeline reports it to the account's ledger
// (directly, or through the settlement queue when the ledger could not be reached). Settled
// exactly once by request id, whichever way and however often it arrives.
import type { PriceTier } from "./pricing";
import type { Usage } from "./usage";
import type { UsageRow } from "./usage-records";

export type SettlementStatus = "ok" | "aborted" | "failed";
// Where the token counts came from: the upstream's usage, or the gateway's own count of what it
// delivered (an upstream that reported none, or stopped reporting it).
export type UsageSource = "upstream" | "gateway";

export interface Settlement {
  accountId: string;
  requestId: string;
  keyId: string | null;
  model: string;
  endpoint: string;
  // What was delivered to the client: for an aborted or failed stream, only what was streamed.
  usage: Usage;
  usageSource?: UsageSource; // absent: "upstream"
  status: SettlementStatus;
  workerId: string | null;
  startedAt: number;
  completedAt: number;
}

export interface SettleResult {
  costMicros: number;
  duplicate: boolean;
}

export function toUsageRow(s: Settlement, usage: Usage, costMicros: number, tier: PriceTier): UsageRow {
  return {
    requestId: s.requestId,
    accountId: s.accountId,
    keyId: s.keyId,
    model: s.model,
    endpoint: s.endpoint,
    cacheHitTokens: usage.cacheHitTokens,
    cacheMissTokens: usage.cacheMissTokens,
    completionTokens: usage.completionTokens,
    reasoningTokens: usage.reasoningTokens,
    usageSource: s.usageSource ?? "upstream",
    costMicros,
    priceTier: tier,
    status: s.status,
    workerId: s.workerId,
    startedAt: s.startedAt,
    completedAt: s.completedAt,
  };
}

// The model and price registry, read from D1. Models and prices are data, not code.
import type { Model } from "./schema";

interface ModelRow {
  id: string;
  owned_by: string;
  context_length: number;
  default_max_tokens: number;
  max_max_tokens: number;
  max_reasoning_tokens: number;
  is_reasoner: number;
  supports_tools: number;
  supports_json_output: number;
  supports_fim: number;
  cache_hit_price: number;
  cache_miss_price: number;
  output_price: number;
  off_peak_discount_percent: number;
  enabled: number;
  created_at: number;
}

function fromRow(row: ModelRow): Model {
  return {
    id: row.id,
    ownedBy: row.owned_by,
    contextLength: row.context_length,
    defaultMaxTokens: row.default_max_tokens,
    maxMaxTokens: row.max_max_tokens,
    maxReasoningTokens: row.max_reasoning_tokens,
    isReasoner: !!row.is_reasoner,
    supportsTools: !!row.supports_tools,
    supportsJsonOutput: !!row.supports_json_output,
    supportsFim: !!row.supports_fim,
    cacheHitPrice: row.cache_hit_price,
    cacheMissPrice: row.cache_miss_price,
    outputPrice: row.output_price,
    offPeakDiscountPercent: row.off_peak_discount_percent,
    enabled: !!row.enabled,
    createdAt: row.created_at,
  };
}

export async function listModels(db: D1Database): Promise<Model[]> {
  const { results } = await db.prepare("SELECT * FROM models WHERE enabled = 1 ORDER BY id").all<ModelRow>();
  return results.map(fromRow);
}

export async function findModel(db: D1Database, id: string): Promise<Model | null> {
  const row = await db.prepare("SELECT * FROM models WHERE id = ? AND enabled = 1").bind(id).first<ModelRow>();
  return row ? fromRow(row) : null;
}

// The registry as a map, cached briefly per isolate: it is read on every inference request.
const REGISTRY_TTL_MS = 5_000;
let registryCache: { at: number; models: ReadonlyMap<string, Model> } | null = null;

export async function modelRegistry(db: D1Database): Promise<ReadonlyMap<string, Model>> {
  if (registryCache && Date.now() - registryCache.at < REGISTRY_TTL_MS) return registryCache.models;
  const models = new Map((await listModels(db)).map((m) => [m.id, m] as const));
  registryCache = { at: Date.now(), models };
  return models;
}

// Shapes the dashboard API sends, shared by the server (workers/gateway/src/dashboard) and the
// web app (apps/dashboard) so the two cannot drift. No imports: the web app compiles this too.

export interface KeyRow {
  id: string;
  name: string;
  display_prefix: string;
  last4: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

// One roll-up row: a UTC day, model and key.
export interface DailyRow {
  day: string;
  model: string;
  key_id: string;
  key_name: string | null;
  requests: number;
  cache_hit_tokens: number;
  cache_miss_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cost_micros: number;
}

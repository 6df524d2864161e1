// Bindings of usage retention (wrangler.toml), kept beside it so the gateway's Env stays about
// the API-key surface.
import type { Env } from "../env";

export interface RetentionEnv extends Env {
  // R2 bucket of archived per-request usage rows (layout.ts).
  USAGE_ARCHIVE?: R2Bucket;
  // Whole UTC days per-request rows stay in D1 (default 30).
  RETENTION_DAYS?: string;
}

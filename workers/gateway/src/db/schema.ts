// The D1 schema: the one source of table types. Migrations in /migrations are generated
// from this file by drizzle-kit (`npm run db:generate`). Money is integer micro-units (1e-6 USD);
// prices are micro-units per one million tokens, so every price in the contract is an integer.
import { sql } from "drizzle-orm";
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from "drizzle-orm/sqlite-core";

const createdAt = () =>
  integer("created_at", { mode: "number" })
    .notNull()
    .default(sql`(unixepoch() * 1000)`);

export const users = sqliteTable("users", {
  id: text("id").primaryKey(),
  email: text("email").notNull().unique(),
  passwordHash: text("password_hash").notNull(),
  passwordSalt: text("password_salt").notNull(),
  passwordIterations: integer("password_iterations").notNull(),
  role: text("role", { enum: ["user", "admin"] }).notNull().default("user"),
  // Bumped by "sign out everywhere": sessions minted under an older epoch stop working.
  sessionEpoch: integer("session_epoch").notNull().default(0),
  createdAt: createdAt(),
});

export const accounts = sqliteTable("accounts", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  ownerUserId: text("owner_user_id").references(() => users.id),
  // Opaque value the GPU workers use to keep prefix-cache entries of accounts apart.
  cacheNamespace: text("cache_namespace").notNull(),
  // Rate limits of the account's tier; null means the platform default.
  rpmLimit: integer("rpm_limit"),
  tpmLimit: integer("tpm_limit"),
  concurrencyLimit: integer("concurrency_limit"),
  createdAt: createdAt(),
});

export const apiKeys = sqliteTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id),
    name: text("name").notNull(),
    // SHA-256 of the whole key, hex. The key itself is never stored.
    keyHash: text("key_hash").notNull(),
    displayPrefix: text("display_prefix").notNull(),
    last4: text("last4").notNull(),
    rpmLimit: integer("rpm_limit"),
    tpmLimit: integer("tpm_limit"),
    concurrencyLimit: integer("concurrency_limit"),
    createdAt: createdAt(),
    lastUsedAt: integer("last_used_at"),
    revokedAt: integer("revoked_at"),
  },
  (t) => [uniqueIndex("api_keys_hash").on(t.keyHash), index("api_keys_account").on(t.accountId)],
);

export const models = sqliteTable("models", {
  id: text("id").primaryKey(),
  ownedBy: text("owned_by").notNull().default("deepseek"),
  contextLength: integer("context_length").notNull(),
  defaultMaxTokens: integer("default_max_tokens").notNull(),
  maxMaxTokens: integer("max_max_tokens").notNull(),
  // Chain-of-thought budget on top of max_tokens (reasoner only).
  maxReasoningTokens: integer("max_reasoning_tokens").notNull().default(0),
  isReasoner: integer("is_reasoner", { mode: "boolean" }).notNull().default(false),
  supportsTools: integer("supports_tools", { mode: "boolean" }).notNull().default(true),
  supportsJsonOutput: integer("supports_json_output", { mode: "boolean" }).notNull().default(true),
  supportsFim: integer("supports_fim", { mode: "boolean" }).notNull().default(true),
  // Prices: micro-USD per 1M tokens.
  cacheHitPrice: integer("cache_hit_price").notNull(),
  cacheMissPrice: integer("cache_miss_price").notNull(),
  outputPrice: integer("output_price").notNull(),
  offPeakDiscountPercent: integer("off_peak_discount_percent").notNull().default(0),
  enabled: integer("enabled", { mode: "boolean" }).notNull().default(true),
  createdAt: createdAt(),
});

// Credits are an append-only log written by operators (CLI, admin page, payment webhook).
// The account ledger Durable Object, the only writer of balances, folds them in by id.
export const balanceCredits = sqliteTable(
  "balance_credits",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id),
    kind: text("kind", { enum: ["granted", "topped_up"] }).notNull(),
    currency: text("currency").notNull().default("USD"),
    amountMicros: integer("amount_micros").notNull(),
    expiresAt: integer("expires_at"),
    // Idempotency for payment webhooks: the provider's event id.
    externalRef: text("external_ref"),
    note: text("note"),
    createdAt: createdAt(),
  },
  (t) => [index("balance_credits_account").on(t.accountId, t.id), uniqueIndex("balance_credits_external").on(t.externalRef)],
);

export const gpuWorkers = sqliteTable("gpu_workers", {
  id: text("id").primaryKey(),
  url: text("url").notNull(),
  // Shared secret the gateway presents to the worker.
  secret: text("secret").notNull(),
  // JSON array of model ids served.
  models: text("models").notNull(),
  enabled: integer("enabled", { mode: "boolean" }).notNull().default(true),
  createdAt: createdAt(),
});

export const usageRecords = sqliteTable(
  "usage_records",
  {
    requestId: text("request_id").primaryKey(),
    accountId: text("account_id").notNull(),
    keyId: text("key_id"),
    model: text("model").notNull(),
    endpoint: text("endpoint").notNull(),
    cacheHitTokens: integer("cache_hit_tokens").notNull(),
    cacheMissTokens: integer("cache_miss_tokens").notNull(),
    completionTokens: integer("completion_tokens").notNull(),
    reasoningTokens: integer("reasoning_tokens").notNull(),
    // Where the token counts came from: the upstream's usage, or the gateway's own count of what
    // it delivered (an upstream that reported no usage, or stopped reporting it).
    usageSource: text("usage_source", { enum: ["upstream", "gateway"] }).notNull().default("upstream"),
    costMicros: integer("cost_micros").notNull(),
    priceTier: text("price_tier", { enum: ["standard", "off_peak"] }).notNull(),
    status: text("status", { enum: ["ok", "aborted", "failed"] }).notNull(),
    workerId: text("worker_id"),
    startedAt: integer("started_at").notNull(),
    completedAt: integer("completed_at").notNull(),
  },
  // Keyset order of exports and archive parts is (completed_at, request_id); the retention job
  // finds rows past the window across all accounts by completed_at.
  (t) => [index("usage_account_time").on(t.accountId, t.completedAt, t.requestId), index("usage_time").on(t.completedAt)],
);

// Settlements the settlement queue gave up on (billing/settlement-queue.ts): each is a served
// request whose money has not arrived. Operators see them (`npm run admin -- dead-settlements`)
// and settle them again once the cause is fixed (`resettled_at`).
export const deadSettlements = sqliteTable("dead_settlements", {
  requestId: text("request_id").primaryKey(),
  accountId: text("account_id").notNull(),
  // The Settlement as JSON, exactly as the pipeline sent it.
  settlement: text("settlement").notNull(),
  attempts: integer("attempts").notNull(),
  deadAt: integer("dead_at").notNull(),
  resettledAt: integer("resettled_at"),
});

export const usageDaily = sqliteTable(
  "usage_daily",
  {
    day: text("day").notNull(), // YYYY-MM-DD, UTC
    accountId: text("account_id").notNull(),
    keyId: text("key_id").notNull().default(""),
    model: text("model").notNull(),
    requests: integer("requests").notNull().default(0),
    cacheHitTokens: integer("cache_hit_tokens").notNull().default(0),
    cacheMissTokens: integer("cache_miss_tokens").notNull().default(0),
    completionTokens: integer("completion_tokens").notNull().default(0),
    reasoningTokens: integer("reasoning_tokens").notNull().default(0),
    costMicros: integer("cost_micros").notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.day, t.accountId, t.keyId, t.model] })],
);

export const sessions = sqliteTable("sessions", {
  // SHA-256 of the session token; the token lives only in the HttpOnly cookie.
  idHash: text("id_hash").primaryKey(),
  userId: text("user_id")
    .notNull()
    .references(() => users.id),
  csrfToken: text("csrf_token").notNull(),
  epoch: integer("epoch").notNull(),
  expiresAt: integer("expires_at").notNull(),
  createdAt: createdAt(),
});

// One-time password-reset tokens: only their SHA-256 is stored; used_at makes them single-use.
export const passwordResets = sqliteTable(
  "password_resets",
  {
    tokenHash: text("token_hash").primaryKey(),
    userId: text("user_id")
      .notNull()
      .references(() => users.id),
    expiresAt: integer("expires_at").notNull(),
    usedAt: integer("used_at"),
    createdAt: createdAt(),
  },
  (t) => [index("password_resets_user").on(t.userId)],
);

// What operators did (dashboard admin routes and the operator CLI): who, what, when, details.
export const auditLog = sqliteTable(
  "audit_log",
  {
    id: integer("id").primaryKey({ autoIncrement: true }),
    // The operator: a dashboard user's email, or "cli:<os user>" for the operator CLI.
    actor: text("actor").notNull(),
    actorUserId: text("actor_user_id"),
    action: text("action").notNull(),
    // What was acted on: an account, key, worker, model or user id.
    target: text("target"),
    // JSON object with the action's parameters.
    details: text("details").notNull().default("{}"),
    createdAt: createdAt(),
  },
  (t) => [index("audit_log_time").on(t.createdAt)],
);

export type Model = typeof models.$inferSelect;
export type ApiKey = typeof apiKeys.$inferSelect;
export type Account = typeof accounts.$inferSelect;
export type GpuWorker = typeof gpuWorkers.$inferSelect;
export type UsageRecord = typeof usageRecords.$inferInsert;

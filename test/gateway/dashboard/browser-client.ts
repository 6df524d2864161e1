// A stand-in for the dashboard in the browser: keeps the session cookie and the CSRF token,
// and sends same-origin requests the way the SPA does.
import { env, SELF } from "cloudflare:test";

export const ORIGIN = "https://gw.test";

export class DashboardClient {
  cookie = "";
  csrf = "";

  async fetch(path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookie && !headers.has("cookie")) headers.set("cookie", this.cookie);
    if (this.csrf && !headers.has("x-csrf-token")) headers.set("x-csrf-token", this.csrf);
    if (!headers.has("origin") && init.method && init.method !== "GET") headers.set("origin", ORIGIN);
    let body = init.body;
    if (init.json !== undefined) {
      body = JSON.stringify(init.json);
      if (!headers.has("content-type")) headers.set("content-type", "application/json");
    }
    const res = await SELF.fetch(`${ORIGIN}/dashboard/api${path}`, { ...init, headers, body, redirect: "manual" });
    const setCookie = res.headers.get("set-cookie");
    if (setCookie) {
      const match = /^([^=]+)=([^;]*)/.exec(setCookie);
      if (match) this.cookie = match[2] ? `${match[1]}=${match[2]}` : "";
    }
    return res;
  }

  get = (path: string) => this.fetch(path);
  post = (path: string, json: unknown = {}) => this.fetch(path, { method: "POST", json });
  put = (path: string, json: unknown) => this.fetch(path, { method: "PUT", json });
  patch = (path: string, json: unknown) => this.fetch(path, { method: "PATCH", json });
  delete = (path: string) => this.fetch(path, { method: "DELETE" });

  async signUp(email = `u${crypto.randomUUID().slice(0, 8)}@example.com`, password = "correct horse battery") {
    const res = await this.post("/auth/signup", { email, password });
    if (res.status !== 201) throw new Error(`sign-up failed: ${res.status} ${await res.text()}`);
    const body = await res.json<{ account_id: string; csrf_token: string }>();
    this.csrf = body.csrf_token;
    return { email, password, accountId: body.account_id };
  }

  async signIn(email: string, password: string) {
    const res = await this.post("/auth/signin", { email, password });
    if (res.ok) this.csrf = (await res.clone().json<{ csrf_token: string }>()).csrf_token;
    return res;
  }

  async createKey(name = "test key") {
    const res = await this.post("/keys", { name });
    if (res.status !== 201) throw new Error(`create key failed: ${res.status} ${await res.text()}`);
    return res.json<{ id: string; key: string; name: string }>();
  }
}

export async function signedUp(): Promise<{ client: DashboardClient; email: string; password: string; accountId: string }> {
  const client = new DashboardClient();
  return { client, ...(await client.signUp()) };
}

export async function makeAdmin(email: string): Promise<void> {
  await env.DB.prepare("UPDATE users SET role = 'admin' WHERE email = ?").bind(email).run();
}

export interface UsageRowInput {
  requestId?: string;
  accountId: string;
  keyId: string | null;
  model?: string;
  completedAt: number;
  hit?: number;
  miss?: number;
  completion?: number;
  cost?: number;
  status?: "ok" | "aborted" | "failed";
}

// Usage rows as the billing path writes them: one per request plus the daily roll-up.
export async function recordUsage(rows: UsageRowInput[]): Promise<void> {
  const statements: D1PreparedStatement[] = [];
  for (const r of rows) {
    const model = r.model ?? "deepseek-chat";
    const hit = r.hit ?? 0;
    const miss = r.miss ?? 10;
    const completion = r.completion ?? 5;
    const cost = r.cost ?? 100;
    statements.push(
      env.DB.prepare(
        `INSERT INTO usage_records (request_id, account_id, key_id, model, endpoint, cache_hit_tokens, cache_miss_tokens,
           completion_tokens, reasoning_tokens, cost_micros, price_tier, status, worker_id, started_at, completed_at)
         VALUES (?, ?, ?, ?, '/chat/completions', ?, ?, ?, 0, ?, 'standard', ?, 'w1', ?, ?)`,
      ).bind(r.requestId ?? crypto.randomUUID(), r.accountId, r.keyId, model, hit, miss, completion, cost, r.status ?? "ok", r.completedAt - 500, r.completedAt),
      env.DB.prepare(
        `INSERT INTO usage_daily (day, account_id, key_id, model, requests, cache_hit_tokens, cache_miss_tokens, completion_tokens, reasoning_tokens, cost_micros)
         VALUES (?, ?, ?, ?, 1, ?, ?, ?, 0, ?)
         ON CONFLICT (day, account_id, key_id, model) DO UPDATE SET requests = requests + 1,
           cache_hit_tokens = cache_hit_tokens + excluded.cache_hit_tokens, cache_miss_tokens = cache_miss_tokens + excluded.cache_miss_tokens,
           completion_tokens = completion_tokens + excluded.completion_tokens, cost_micros = cost_micros + excluded.cost_micros`,
      ).bind(new Date(r.completedAt).toISOString().slice(0, 10), r.accountId, r.keyId ?? "", model, hit, miss, completion, cost),
    );
  }
  for (let i = 0; i < statements.length; i += 200) await env.DB.batch(statements.slice(i, i + 200));
}

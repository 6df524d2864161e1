// Helpers for the e2e tests: fresh accounts through the dashboard's sign-up (fast, and its
// balance page reports micro-units), the OpenAI SDK pointed at the gateway, usage rows from
// the gateway's local D1, and the contract's prices computed independently of the gateway.
import { randomBytes } from "node:crypto";
import OpenAI from "openai";
import { inject } from "vitest";
// @ts-expect-error plain ESM module without types
import { sql } from "../../scripts/lib/platform.mjs";

export const platform = () => inject("platform");

export interface TestAccount {
  accountId: string;
  email: string;
  session: { cookie: string; "x-csrf-token": string }; // the dashboard's signed-in headers
  key: string;
  client: OpenAI;
  beta: OpenAI;
  balanceMicros(): Promise<number>;
}

// A new dashboard user: its own account (so its own prefix-cache namespace), the sign-up grant,
// and an API key made on the keys page.
export async function signUp(): Promise<TestAccount> {
  const { baseURL } = platform();
  const email = `e2e-${randomBytes(6).toString("hex")}@example.com`;
  const signup = await fetch(`${baseURL}/dashboard/api/auth/signup`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: `pw-${randomBytes(12).toString("hex")}` }),
  });
  if (signup.status !== 201) throw new Error(`sign-up: ${signup.status} ${await signup.text()}`);
  const { account_id: accountId, csrf_token: csrf } = (await signup.json()) as { account_id: string; csrf_token: string };
  const cookie = signup.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  const session = { cookie, "x-csrf-token": csrf };
  const made = await fetch(`${baseURL}/dashboard/api/keys`, {
    method: "POST",
    headers: { ...session, "content-type": "application/json" },
    body: JSON.stringify({ name: "e2e" }),
  });
  if (made.status !== 201) throw new Error(`create key: ${made.status} ${await made.text()}`);
  const { key } = (await made.json()) as { key: string };
  return {
    accountId,
    email,
    session,
    key,
    client: openai(key),
    beta: openai(key, `${baseURL}/beta`),
    async balanceMicros() {
      const res = await fetch(`${baseURL}/dashboard/api/balance`, { headers: session });
      const body = (await res.json()) as { balances: { currency: string; total_micros: number }[] };
      return body.balances.find((b) => b.currency === "USD")!.total_micros;
    },
  };
}

export function openai(key: string, baseURL = `${platform().baseURL}/v1`): OpenAI {
  return new OpenAI({ apiKey: key, baseURL, maxRetries: 0, timeout: 170_000 });
}

export interface UsageRow {
  request_id: string;
  account_id: string;
  model: string;
  endpoint: string;
  cache_hit_tokens: number;
  cache_miss_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  cost_micros: number;
  price_tier: "standard" | "off_peak";
  status: string;
  worker_id: string | null;
  completed_at: number;
}

export const query = <T = Record<string, unknown>>(command: string): Promise<T[]> => sql(command, { persistTo: platform().persistTo });

const quote = (s: string) => `'${s.replaceAll("'", "''")}'`;

// Usage rows are written by the account ledger's outbox shortly after settlement: poll.
export async function usageRows(requestIds: string[], timeoutMs = 30_000): Promise<UsageRow[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const rows = await query<UsageRow>(`SELECT * FROM usage_records WHERE request_id IN (${requestIds.map(quote).join(", ")})`);
    if (rows.length === requestIds.length) return requestIds.map((id) => rows.find((r) => r.request_id === id)!);
    if (Date.now() > deadline) throw new Error(`usage rows for ${requestIds.join(", ")}: found ${rows.length}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
export const usageRow = async (requestId: string) => (await usageRows([requestId]))[0]!;

// The contract's default prices, micro-USD per 1M tokens, and the off-peak window 16:30-00:30 UTC.
export const PRICES = {
  "deepseek-chat": { hit: 70_000, miss: 270_000, output: 1_100_000, offPeakPercent: 50 },
  "deepseek-reasoner": { hit: 140_000, miss: 550_000, output: 2_190_000, offPeakPercent: 75 },
} as const;

export function isOffPeak(ms: number): boolean {
  const minute = Math.floor((ms % 86_400_000) / 60_000);
  return minute >= 16 * 60 + 30 || minute < 30;
}

// Cost of one request in micro-USD: exact rational, rounded half-up once per request.
export function expectedCost(model: keyof typeof PRICES, tokens: { hit: number; miss: number; output: number }, tier: "standard" | "off_peak"): number {
  const p = PRICES[model];
  const list = BigInt(tokens.hit) * BigInt(p.hit) + BigInt(tokens.miss) * BigInt(p.miss) + BigInt(tokens.output) * BigInt(p.output);
  const payable = BigInt(100 - (tier === "off_peak" ? p.offPeakPercent : 0));
  const denominator = 1_000_000n * 100n;
  return Number((2n * list * payable + denominator) / (2n * denominator));
}

// Text long enough to span many 64-token cache blocks, different per seed.
export function longText(seed: string, sentences = 60): string {
  const words = ["amber", "basalt", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "juniper", "kelp", "lumen"];
  const out: string[] = [];
  for (let i = 0; i < sentences; i++) out.push(`${seed} note ${i}: ${words[i % words.length]} ${words[(i * 7) % words.length]} river ${i * 13}.`);
  return out.join(" ");
}

export async function requestIdOf<T>(promise: { withResponse(): Promise<{ data: T; response: Response }> }): Promise<{ data: T; requestId: string }> {
  const { data, response } = await promise.withResponse();
  return { data, requestId: response.headers.get("x-ds-trace-id")! };
}

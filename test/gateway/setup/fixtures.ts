// Test helpers that create accounts, keys and credits straight in D1, the way the operator CLI does.
import { env } from "cloudflare:test";
import { generateApiKey } from "../../../workers/gateway/src/auth/api-keys";

export async function createAccount(name = "test"): Promise<string> {
  const id = `acct_${crypto.randomUUID().slice(0, 8)}`;
  await env.DB.prepare("INSERT INTO accounts (id, name, cache_namespace) VALUES (?, ?, ?)").bind(id, name, crypto.randomUUID()).run();
  return id;
}

export async function createKey(accountId: string, name = "key"): Promise<{ key: string; keyId: string }> {
  const k = await generateApiKey();
  const keyId = `key_${crypto.randomUUID().slice(0, 8)}`;
  await env.DB.prepare("INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4) VALUES (?, ?, ?, ?, ?, ?)")
    .bind(keyId, accountId, name, k.keyHash, k.displayPrefix, k.last4)
    .run();
  return { key: k.key, keyId };
}

export async function credit(accountId: string, kind: "granted" | "topped_up", micros: number): Promise<void> {
  await env.DB.prepare("INSERT INTO balance_credits (account_id, kind, amount_micros) VALUES (?, ?, ?)").bind(accountId, kind, micros).run();
}

// Registers a GPU worker row; the fake upstream's address comes from the global setup.
export async function registerWorker(id: string, url: string, secret: string, models = ["deepseek-chat", "deepseek-reasoner"]): Promise<void> {
  await env.DB.prepare("INSERT OR REPLACE INTO gpu_workers (id, url, secret, models) VALUES (?, ?, ?, ?)").bind(id, url, secret, JSON.stringify(models)).run();
}

// An account with a key, a balance and the fake upstream registered: ready to call the API.
export async function readyAccount(balanceMicros = 10_000_000): Promise<{ account: string; key: string; keyId: string }> {
  const account = await createAccount();
  const { key, keyId } = await createKey(account);
  if (balanceMicros > 0) await credit(account, "granted", balanceMicros);
  return { account, key, keyId };
}

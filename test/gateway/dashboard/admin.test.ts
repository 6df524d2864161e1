import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { openWorkerSecret } from "../../../workers/gateway/src/upstream/worker-secret";
import { makeAdmin, signedUp } from "./browser-client";

async function operator() {
  const op = await signedUp();
  await makeAdmin(op.email);
  return op.client;
}

describe("operator pages", () => {
  it("are closed to users", async () => {
    const { client } = await signedUp();
    for (const path of ["/admin/accounts", "/admin/workers", "/admin/models"]) expect((await client.get(path)).status).toBe(403);
    expect((await client.post("/admin/workers", { url: "http://x", secret: "12345678", models: ["m"] })).status).toBe(403);
  });

  it("list accounts and grant credit", async () => {
    const admin = await operator();
    const customer = await signedUp();
    const found = await (await admin.get(`/admin/accounts?q=${encodeURIComponent(customer.email)}`)).json<any>();
    expect(found.data).toHaveLength(1);
    expect(found.data[0]).toMatchObject({ id: customer.accountId, owner_email: customer.email });
    const grant = await admin.post(`/admin/accounts/${customer.accountId}/grants`, { kind: "topped_up", amount: "12.50", note: "invoice 7" });
    expect(grant.status).toBe(201);
    expect((await admin.post(`/admin/accounts/${customer.accountId}/grants`, { kind: "granted", amount: "-1" })).status).toBe(400);
    expect((await admin.post(`/admin/accounts/acct_missing/grants`, { kind: "granted", amount: "1" })).status).toBe(404);
    const balance = await (await customer.client.get("/balance")).json<any>();
    expect(balance.balances[0]).toMatchObject({ granted_micros: 5_000_000, topped_up_micros: 12_500_000, total_micros: 17_500_000 });
    const user = await SELF.fetch("https://gw.test/user/balance", {
      headers: { authorization: `Bearer ${(await customer.client.createKey("k")).key}` },
    });
    expect((await user.json<any>()).balance_infos[0].total_balance).toBe("17.50");
  });

  it("set rate limits of accounts and keys", async () => {
    const admin = await operator();
    const customer = await signedUp();
    const key = await customer.client.createKey("limited");
    expect((await admin.put(`/admin/accounts/${customer.accountId}/limits`, { rpm_limit: 60, tpm_limit: 100000, concurrency_limit: 4 })).status).toBe(200);
    expect((await admin.put(`/admin/keys/${key.id}/limits`, { rpm_limit: 10, tpm_limit: null, concurrency_limit: 1 })).status).toBe(200);
    expect((await admin.put(`/admin/keys/${key.id}/limits`, { rpm_limit: -1, tpm_limit: null, concurrency_limit: 1 })).status).toBe(400);
    const account = await env.DB.prepare("SELECT rpm_limit, tpm_limit, concurrency_limit FROM accounts WHERE id = ?").bind(customer.accountId).first();
    expect(account).toEqual({ rpm_limit: 60, tpm_limit: 100000, concurrency_limit: 4 });
    const keys = await (await admin.get(`/admin/accounts/${customer.accountId}/keys`)).json<any>();
    expect(keys.data[0]).toMatchObject({ id: key.id, rpm_limit: 10, tpm_limit: null, concurrency_limit: 1 });
    expect(JSON.stringify(keys)).not.toContain(key.key);
  });

  it("manage GPU workers without ever showing a secret back", async () => {
    const admin = await operator();
    const secret = "worker-secret-abcd";
    const created = await admin.post("/admin/workers", { id: "gpu-test-1", url: "http://127.0.0.1:9999", secret, models: ["deepseek-chat"] });
    expect(created.status).toBe(201);
    const body = await created.json<any>();
    expect(body).toMatchObject({ id: "gpu-test-1", secret_hint: "••••abcd", models: ["deepseek-chat"], enabled: true });
    const list = await (await admin.get("/admin/workers")).text();
    expect(list).not.toContain(secret);
    const patched = await (await admin.patch("/admin/workers/gpu-test-1", { enabled: false, secret: "rotated-secret-wxyz" })).json<any>();
    expect(patched).toMatchObject({ enabled: false, secret_hint: "••••wxyz" });
    const row = await env.DB.prepare("SELECT secret, enabled FROM gpu_workers WHERE id = 'gpu-test-1'").first();
    expect(row!.enabled).toBe(0);
    expect(String(row!.secret)).toMatch(/^enc:v1:/); // sealed under WORKER_SECRET_KEY, never plaintext
    expect(await openWorkerSecret(String(row!.secret), env.WORKER_SECRET_KEY)).toBe("rotated-secret-wxyz");
    expect((await admin.post("/admin/workers", { url: "javascript:alert(1)", secret, models: ["m"] })).status).toBe(400);
    expect((await admin.delete("/admin/workers/gpu-test-1")).status).toBe(200);
  });

  it("edit prices", async () => {
    const admin = await operator();
    const res = await admin.patch("/admin/models/deepseek-chat", { cache_hit_price: 80000, off_peak_discount_percent: 40 });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: "deepseek-chat", cache_hit_price: 80000, cache_miss_price: 270000, off_peak_discount_percent: 40 });
    expect((await admin.patch("/admin/models/deepseek-chat", { output_price: 1.5 })).status).toBe(400);
    expect((await admin.patch("/admin/models/nope", { output_price: 1 })).status).toBe(404);
    // Other suites may share this database: put the contract's prices back.
    expect((await admin.patch("/admin/models/deepseek-chat", { cache_hit_price: 70000, off_peak_discount_percent: 50 })).status).toBe(200);
  });
});

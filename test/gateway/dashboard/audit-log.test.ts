// The audit log: every change an operator makes through the admin API is recorded with who made
// it, what, when and its parameters (secrets masked); failed changes are not; admins read it.
import { describe, expect, it } from "vitest";
import { makeAdmin, signedUp } from "./browser-client";

async function operator() {
  const op = await signedUp();
  await makeAdmin(op.email);
  return op;
}

describe("audit log of admin actions", () => {
  it("records a grant with its operator even when the grant has its own note", async () => {
    const op = await operator();
    const customer = await signedUp();
    const started = Date.now();
    const grant = await op.client.post(`/admin/accounts/${customer.accountId}/grants`, { kind: "topped_up", amount: "12.50", note: "invoice 7" });
    expect(grant.status).toBe(201);
    const log = await (await op.client.get("/admin/audit")).json<any>();
    const entry = log.data.find((e: any) => e.target === customer.accountId);
    expect(entry).toMatchObject({ actor: op.email, action: "grant", details: { body: { kind: "topped_up", amount: "12.50", note: "invoice 7" } } });
    expect(entry.created_at).toBeGreaterThanOrEqual(started);
  });

  it("masks secrets, skips failed changes, and pages newest first", async () => {
    const op = await operator();
    const limits = { rpm_limit: 60, tpm_limit: null, concurrency_limit: 2 };
    const customer = await signedUp();
    expect((await op.client.put(`/admin/accounts/${customer.accountId}/limits`, limits)).status).toBe(200);
    expect((await op.client.put(`/admin/accounts/acct_missing/limits`, limits)).status).toBe(404);
    expect((await op.client.post(`/admin/accounts/${customer.accountId}/grants`, { kind: "granted", amount: "-1" })).status).toBe(400);
    const added = await op.client.post("/admin/workers", { id: `w-${crypto.randomUUID().slice(0, 6)}`, url: "http://127.0.0.1:9", secret: "a-very-secret-value", models: ["deepseek-chat"] });
    expect(added.status).toBe(201);

    const mine = (await (await op.client.get("/admin/audit?limit=200")).json<any>()).data.filter((e: any) => e.actor === op.email);
    expect(mine.map((e: any) => e.action)).toEqual(["add-worker", "set-account-limits"]);
    expect(mine[0].details.body.secret).toBe("••••");
    expect(JSON.stringify(mine)).not.toContain("a-very-secret-value");
    expect(mine[1]).toMatchObject({ target: customer.accountId, details: { body: limits } });

    const first = await (await op.client.get("/admin/audit?limit=1")).json<any>();
    expect(first.data).toHaveLength(1);
    const second = await (await op.client.get(`/admin/audit?limit=1&before=${first.next_before}`)).json<any>();
    expect(second.data[0].id).toBeLessThan(first.data[0].id);
    expect((await op.client.get("/admin/audit?before=x")).status).toBe(400);
  });

  it("is for operators only", async () => {
    const { client } = await signedUp();
    expect((await client.get("/admin/audit")).status).toBe(403);
  });
});

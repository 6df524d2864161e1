import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { createAccount, createKey, credit } from "./setup/fixtures";

const get = (path: string, headers: Record<string, string> = {}) => SELF.fetch(`https://gw.test${path}`, { headers });

describe("models", () => {
  it("lists the registry with a key, under / and /v1", async () => {
    const { key } = await createKey(await createAccount());
    for (const path of ["/models", "/v1/models"]) {
      const res = await get(path, { authorization: `Bearer ${key}` });
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ds-trace-id")).toMatch(/^[0-9a-f-]{36}$/);
      expect(await res.json()).toEqual({
        object: "list",
        data: [
          { id: "deepseek-chat", object: "model", owned_by: "deepseek" },
          { id: "deepseek-reasoner", object: "model", owned_by: "deepseek" },
        ],
      });
    }
  });
});

describe("balance", () => {
  it("reflects grants and top-ups as strings", async () => {
    const account = await createAccount();
    const { key } = await createKey(account);
    await credit(account, "granted", 10_000_000);
    await credit(account, "topped_up", 100_000_000);
    const res = await get("/user/balance", { "x-api-key": key });
    expect(await res.json()).toEqual({
      is_available: true,
      balance_infos: [{ currency: "USD", total_balance: "110.00", granted_balance: "10.00", topped_up_balance: "100.00" }],
    });
  });
});

import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { signedUp } from "./browser-client";

describe("CSRF", () => {
  it("refuses state changes without the session's CSRF token", async () => {
    const { client } = await signedUp();
    const missing = await client.fetch("/keys", { method: "POST", json: { name: "x" }, headers: { "x-csrf-token": "" } });
    expect(missing.status).toBe(403);
    expect((await missing.json<any>()).error.code).toBe("csrf_failed");
    const wrong = await client.fetch("/keys", { method: "POST", json: { name: "x" }, headers: { "x-csrf-token": "0".repeat(64) } });
    expect(wrong.status).toBe(403);
    expect((await (await client.get("/keys")).json<any>()).data).toHaveLength(0);
  });

  it("refuses a cross-site request even when it carries the cookie and a token", async () => {
    const { client } = await signedUp();
    const evil = await client.fetch("/keys", { method: "POST", json: { name: "x" }, headers: { origin: "https://evil.example" } });
    expect(evil.status).toBe(403);
    const fetchSite = await client.fetch("/auth/signout-everywhere", { method: "POST", json: {}, headers: { "sec-fetch-site": "cross-site" } });
    expect(fetchSite.status).toBe(403);
    expect((await client.get("/keys")).status).toBe(200);
  });

  it("refuses a cross-site form posting to sign-in or sign-up", async () => {
    const form = await SELF.fetch("https://gw.test/dashboard/api/auth/signup", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "email=a@b.co&password=long+enough+password",
    });
    expect(form.status).toBe(403);
    const crossOrigin = await SELF.fetch("https://gw.test/dashboard/api/auth/signin", {
      method: "POST",
      headers: { "content-type": "application/json", origin: "https://evil.example" },
      body: JSON.stringify({ email: "a@b.co", password: "whatever" }),
    });
    expect(crossOrigin.status).toBe(403);
  });
});

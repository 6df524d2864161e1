// CORS for browser clients of the API: configurable origins (CORS_ORIGINS), a preflight that
// allows authorization and content-type, headers on errors too, nothing on the dashboard.
import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { buildApp } from "../../../workers/gateway/src/app";
import { BASE } from "../chat/helpers";

const app = buildApp();

async function withOrigins(origins: string, path: string, init: RequestInit): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await app.fetch(new Request(`${BASE}${path}`, init), { ...env, CORS_ORIGINS: origins }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

const preflight = (origin: string) => ({
  method: "OPTIONS",
  headers: { origin, "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
});

describe("CORS", () => {
  it("answers the preflight of every API path, allowing authorization and content-type", async () => {
    for (const path of ["/chat/completions", "/v1/chat/completions", "/beta/completions", "/anthropic/v1/messages", "/v1/models"]) {
      const res = await SELF.fetch(`${BASE}${path}`, preflight("https://app.example.com"));
      expect(res.status, path).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe("*"); // local default: CORS_ORIGINS = "*"
      const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase();
      expect(allowed).toContain("authorization");
      expect(allowed).toContain("content-type");
      expect(res.headers.get("access-control-allow-methods")).toContain("POST");
    }
  });

  it("puts the headers on error answers too, so a browser can read the 401", async () => {
    const res = await SELF.fetch(`${BASE}/v1/chat/completions`, {
      method: "POST",
      headers: { origin: "https://app.example.com", authorization: "Bearer sk-00000000000000000000000000000000", "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-expose-headers")).toContain("x-ds-trace-id");
  });

  it("allows only the configured origins", async () => {
    const origins = "https://app.example.com, https://chat.example.org";
    const ok = await withOrigins(origins, "/v1/models", preflight("https://chat.example.org"));
    expect(ok.headers.get("access-control-allow-origin")).toBe("https://chat.example.org");
    const other = await withOrigins(origins, "/v1/models", preflight("https://evil.example.net"));
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    const none = await withOrigins("", "/v1/models", preflight("https://app.example.com"));
    expect(none.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("leaves the dashboard (same-origin, cookies) and server-side clients (no Origin) alone", async () => {
    const dashboard = await SELF.fetch(`${BASE}/dashboard/api/auth/session`, { headers: { origin: "https://evil.example.net" } });
    expect(dashboard.headers.get("access-control-allow-origin")).toBeNull();
    const server = await SELF.fetch(`${BASE}/v1/models`, { headers: { authorization: "Bearer sk-00000000000000000000000000000000" } });
    expect(server.headers.get("access-control-allow-origin")).toBeNull();
  });
});

// The dashboard's worker registry under production rules (ENVIRONMENT other than
// "development"): only https:// hostnames, with a message that says why.
import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { expect, it } from "vitest";
import { buildApp } from "../../../workers/gateway/src/app";
import { makeAdmin, ORIGIN, signedUp } from "./browser-client";

const app = buildApp();

async function asProduction(client: { cookie: string; csrf: string }, path: string, json: unknown): Promise<Response> {
  const ctx = createExecutionContext();
  const request = new Request(`${ORIGIN}/dashboard/api${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", cookie: client.cookie, "x-csrf-token": client.csrf, origin: ORIGIN },
    body: JSON.stringify(json),
  });
  const res = await app.fetch(request, { ...env, ENVIRONMENT: "production" }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

it("production refuses http:// and IP-literal worker URLs with a clear error, and takes an https hostname", async () => {
  const op = await signedUp();
  await makeAdmin(op.email);
  const worker = { secret: "worker-secret-abcd", models: ["deepseek-chat"] };

  const http = await asProduction(op.client, "/admin/workers", { ...worker, id: "prod-http", url: "http://gpu.example.com" });
  expect(http.status).toBe(400);
  expect((await http.json<any>()).error).toMatchObject({ param: "url", message: expect.stringMatching(/must be https:\/\/ outside local development/) });

  const ip = await asProduction(op.client, "/admin/workers", { ...worker, id: "prod-ip", url: "https://203.0.113.9:8100" });
  expect(ip.status).toBe(400);
  expect((await ip.json<any>()).error.message).toMatch(/error 1003/);

  const ok = await asProduction(op.client, "/admin/workers", { ...worker, id: "prod-ok", url: "https://gpu-1.example.com/" });
  expect(ok.status).toBe(201);
  expect(await ok.json()).toMatchObject({ id: "prod-ok", url: "https://gpu-1.example.com" });
  await env.DB.prepare("DELETE FROM gpu_workers WHERE id = 'prod-ok'").run();
});

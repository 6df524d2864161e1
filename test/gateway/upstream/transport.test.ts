// GPU transport: what a deployed gateway meets between it and its workers. Answers from
// Cloudflare's edge and workers that never answer count as failed workers and fail over;
// worker secrets are stored encrypted; worker URLs follow the production rules.
import { env } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import { ApiError } from "../../../workers/gateway/src/errors/api-error";
import { connectUpstream, type UpstreamRequest } from "../../../workers/gateway/src/upstream/connect";
import { pickWorker } from "../../../workers/gateway/src/upstream/pick-worker";
import { invalidateWorkerRegistry, listWorkers } from "../../../workers/gateway/src/upstream/worker-registry";
import { isSealed, openWorkerSecret, sealWorkerSecret } from "../../../workers/gateway/src/upstream/worker-secret";
import { checkWorkerUrl } from "../../../workers/gateway/src/upstream/worker-url";

type BadKind = "edge" | "hole" | "sick";

const stats = async (kind: BadKind): Promise<{ health: number; requests: number }> => (await fetch(`${inject("badWorkers")[kind]}/__stats`)).json();

async function register(id: string, url: string, secret: string, models: string[]): Promise<void> {
  const sealed = await sealWorkerSecret(secret, env.WORKER_SECRET_KEY);
  await env.DB.prepare("INSERT OR REPLACE INTO gpu_workers (id, url, secret, models) VALUES (?, ?, ?, ?)").bind(id, url, sealed, JSON.stringify(models)).run();
  invalidateWorkerRegistry();
}

const request = (model: string, affinityKey: string): UpstreamRequest => ({
  model,
  path: "/v1/chat/completions",
  body: { model: "deepseek-chat", messages: [{ role: "user", content: "hi [[words:2]]" }], stream: true, max_tokens: 8 },
  requestId: crypto.randomUUID(),
  cacheNamespace: "transport-test",
  affinityKey,
});

const connect = (req: UpstreamRequest) => connectUpstream(env, req, new AbortController().signal, (p) => void p.catch(() => undefined));

// An affinity key whose preferred worker (among those registered for the model) is `id`, so the
// test knows which worker the gateway tries first.
async function keyPreferring(id: string, model: string): Promise<string> {
  const workers = await listWorkers(env);
  for (let i = 0; i < 1000; i++) if (pickWorker(workers, model, `k${i}`, new Set())?.id === id) return `k${i}`;
  throw new Error(`no affinity key prefers ${id}`);
}

describe("failover from what is not the worker", () => {
  it.each([
    ["edge", "an answer from Cloudflare's edge (403 HTML, error 1003)"],
    ["hole", "a worker that sends no response headers within the connect timeout"],
  ] as const)("%s: %s counts as that worker failing; the request goes to the next worker", async (kind, _what) => {
    const model = `failover-${kind}`;
    const fake = inject("fakeUpstream");
    await register(`bad-${kind}`, inject("badWorkers")[kind], "bad-worker-secret", [model]);
    await register(`good-for-${kind}`, fake.url, fake.secret, [model]);
    const key = await keyPreferring(`bad-${kind}`, model);
    const before = (await stats(kind)).requests;

    const conn = await connect(request(model, key));
    expect(conn.worker.id).toBe(`good-for-${kind}`);
    const first = JSON.parse((await conn.events.next()).value![0]!);
    expect(first.object).toBe("chat.completion.chunk");
    await conn.release();
    expect((await stats(kind)).requests).toBe(before + 1);
  });

  it("with only such a worker, the client gets 503 Server Overloaded instead of the edge's 403", async () => {
    const model = "edge-only";
    await register("edge-only", inject("badWorkers").edge, "bad-worker-secret", [model]);
    const failure = await connect(request(model, "k")).catch((err) => err);
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure.status).toBe(503);
  });

  it("a worker's own JSON refusal (4xx) is passed on, not retried elsewhere", async () => {
    const fake = inject("fakeUpstream");
    await register("json-refusal", fake.url, fake.secret, ["json-refusal"]);
    const req = request("json-refusal", "k");
    req.body = { ...req.body, messages: [{ role: "user", content: "[[status:400]]" }] };
    const failure = await connect(req).catch((err) => err);
    expect(failure).toBeInstanceOf(ApiError);
    expect(failure.status).toBe(400);
    expect(failure.message).toBe("fake worker status 400");
  });
});

describe("worker health shared by every isolate", () => {
  it("a worker whose /health says error (503) gets no requests, also in a fresh isolate", async () => {
    const model = "sick-model";
    await register("sick", inject("badWorkers").sick, "bad-worker-secret", [model]);
    const stub = env.WORKER_HEALTH.get(env.WORKER_HEALTH.idFromName("fleet"));
    const target = { id: "sick", url: inject("badWorkers").sick, secret: "bad-worker-secret" };
    await stub.view([target]); // the first look starts a probe
    await expect.poll(async () => (await stub.view([target])).sick?.up, { timeout: 5_000 }).toBe(false);

    invalidateWorkerRegistry(); // what a new isolate knows: nothing of its own
    const before = (await stats("sick")).requests;
    const failure = await connect(request(model, "k")).catch((err) => err);
    expect(failure.status).toBe(503);
    expect((await stats("sick")).requests).toBe(before);
  });

  it("a draining worker (200, status draining), or an edge page reads as down; a healthy one as up", async () => {
    const stub = env.WORKER_HEALTH.get(env.WORKER_HEALTH.idFromName("probe-reading"));
    const bad = inject("badWorkers");
    const fake = inject("fakeUpstream");
    const targets = [
      { id: "draining", url: bad.draining, secret: "x" },
      { id: "edge", url: bad.edge, secret: "x" },
      { id: "healthy", url: fake.url, secret: fake.secret },
    ];
    await stub.view(targets);
    await expect
      .poll(async () => Object.fromEntries(Object.entries(await stub.view(targets)).map(([id, v]) => [id, v.up])), { timeout: 10_000 })
      .toEqual({ draining: false, edge: false, healthy: true });
  });

  it("probes stay bounded: many isolates asking at once cause at most one /health probe per interval", async () => {
    const stub = env.WORKER_HEALTH.get(env.WORKER_HEALTH.idFromName("bounded-probes"));
    const target = { id: "sick", url: inject("badWorkers").sick, secret: "x" };
    const before = (await stats("sick")).health;
    await Promise.all(Array.from({ length: 40 }, () => stub.view([target])));
    await expect.poll(async () => (await stats("sick")).health).toBe(before + 1);
    await Promise.all(Array.from({ length: 40 }, () => stub.view([target])));
    expect((await stats("sick")).health).toBe(before + 1);
  });
});

describe("worker secrets at rest", () => {
  it("are sealed with AES-GCM under WORKER_SECRET_KEY and opened again; plaintext rows still read", async () => {
    const sealed = await sealWorkerSecret("s3cret-value", env.WORKER_SECRET_KEY);
    expect(isSealed(sealed)).toBe(true);
    expect(sealed).not.toContain("s3cret-value");
    expect(await sealWorkerSecret("s3cret-value", env.WORKER_SECRET_KEY)).not.toBe(sealed); // fresh IV
    expect(await openWorkerSecret(sealed, env.WORKER_SECRET_KEY)).toBe("s3cret-value");
    expect(await openWorkerSecret("legacy-plain", env.WORKER_SECRET_KEY)).toBe("legacy-plain");
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));
    await expect(openWorkerSecret(sealed, otherKey)).rejects.toThrow();
    await expect(sealWorkerSecret("x", undefined)).rejects.toThrow(/WORKER_SECRET_KEY is not set/);
  });

  it("the gateway opens a sealed row to authenticate to the worker", async () => {
    const fake = inject("fakeUpstream");
    await register("sealed-secret", fake.url, fake.secret, ["sealed-model"]);
    const row = await env.DB.prepare("SELECT secret FROM gpu_workers WHERE id = 'sealed-secret'").first<{ secret: string }>();
    expect(row!.secret).not.toContain(fake.secret);
    const conn = await connect(request("sealed-model", "k"));
    expect(conn.worker.id).toBe("sealed-secret");
    await conn.release();
  });

  it("a row sealed under another key leaves only that worker out; the others still serve", async () => {
    const fake = inject("fakeUpstream");
    const otherKey = btoa(String.fromCharCode(...new Uint8Array(32).fill(9)));
    const foreign = await sealWorkerSecret(fake.secret, otherKey);
    await env.DB.prepare("INSERT OR REPLACE INTO gpu_workers (id, url, secret, models) VALUES (?, ?, ?, ?)").bind("foreign-key", fake.url, foreign, JSON.stringify(["mixed-keys"])).run();
    await register("own-key", fake.url, fake.secret, ["mixed-keys"]);
    const ids = (await listWorkers(env)).map((w) => w.id);
    expect(ids).toContain("own-key");
    expect(ids).not.toContain("foreign-key");
    const conn = await connect(request("mixed-keys", "k"));
    expect(conn.worker.id).toBe("own-key");
    await conn.release();
    await env.DB.prepare("DELETE FROM gpu_workers WHERE id IN ('foreign-key', 'own-key')").run();
    invalidateWorkerRegistry();
  });
});

describe("worker URLs", () => {
  const production = { development: false };
  it("production takes https:// hostnames only", () => {
    expect(checkWorkerUrl("https://gpu-1.example.com/", production)).toBe("https://gpu-1.example.com");
    expect(checkWorkerUrl("https://gpu-1.example.com:8443/base", production)).toBe("https://gpu-1.example.com:8443/base");
    expect(() => checkWorkerUrl("http://gpu-1.example.com", production)).toThrow(/must be https:\/\/ outside local development/);
    for (const ip of ["https://10.0.0.7:8100", "https://[2001:db8::1]", "https://127.1", "https://localhost:8100"]) {
      expect(() => checkWorkerUrl(ip, production)).toThrow(/needs a hostname/);
    }
    expect(() => checkWorkerUrl("https://user:pw@gpu.example.com", production)).toThrow(/credentials/);
    expect(() => checkWorkerUrl("gpu.example.com", production)).toThrow(/not a URL/);
  });

  it("local development also takes http:// and IP addresses", () => {
    expect(checkWorkerUrl("http://127.0.0.1:8100", { development: true })).toBe("http://127.0.0.1:8100");
    expect(() => checkWorkerUrl("ftp://127.0.0.1", { development: true })).toThrow(/https/);
  });
});

// Operator: the GPU worker registry. A worker's secret is write-only: it is never sent back,
// only its last four characters, so the page can tell which one is set. It is stored
// encrypted (upstream/worker-secret.ts); URLs follow upstream/worker-url.ts.
import { Hono, type Context } from "hono";
import { z } from "zod";
import { randomHex } from "../auth/api-keys";
import { isDevelopment } from "../env";
import { ApiError } from "../errors/api-error";
import { invalidateWorkerRegistry } from "../upstream/worker-registry";
import { openWorkerSecret, sealWorkerSecret } from "../upstream/worker-secret";
import { checkWorkerUrl, WorkerUrlError } from "../upstream/worker-url";
import { parseBody } from "./body";
import type { DashboardAppEnv } from "./env";
import { conflict, invalidInput, notFoundHere } from "./errors";

const url = z.string().trim().max(500);
const modelIds = z.array(z.string().trim().min(1).max(100)).min(1).max(50);
const newWorker = z.object({
  id: z.string().trim().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  url,
  secret: z.string().min(8).max(500),
  models: modelIds,
  enabled: z.boolean().default(true),
});
const workerPatch = z.object({
  url: url.optional(),
  secret: z.string().min(8).max(500).optional(),
  models: modelIds.optional(),
  enabled: z.boolean().optional(),
});

interface WorkerRow {
  id: string;
  url: string;
  secret: string;
  models: string;
  enabled: number;
  created_at: number;
}

function allowedUrl(c: Context<DashboardAppEnv>, text: string): string {
  try {
    return checkWorkerUrl(text, { development: isDevelopment(c.env) });
  } catch (err) {
    if (err instanceof WorkerUrlError) throw invalidInput(`url: ${err.message}`, "url");
    throw err;
  }
}

async function sealed(c: Context<DashboardAppEnv>, secret: string): Promise<string> {
  try {
    return await sealWorkerSecret(secret, c.env.WORKER_SECRET_KEY);
  } catch (err) {
    throw new ApiError(500, `Cannot store the worker secret: ${(err as Error).message}`);
  }
}

async function shown(c: Context<DashboardAppEnv>, w: WorkerRow) {
  const secret = await openWorkerSecret(w.secret, c.env.WORKER_SECRET_KEY).catch(() => "????");
  let models: unknown = [];
  try {
    models = JSON.parse(w.models);
  } catch {
    models = [];
  }
  return { id: w.id, url: w.url, secret_hint: `••••${secret.slice(-4)}`, models, enabled: !!w.enabled, created_at: w.created_at };
}

export const adminWorkerRoutes = new Hono<DashboardAppEnv>()
  .get("/workers", async (c) => {
    const { results } = await c.env.DB.prepare("SELECT * FROM gpu_workers ORDER BY id").all<WorkerRow>();
    return c.json({ data: await Promise.all(results.map((w) => shown(c, w))) });
  })

  .post("/workers", async (c) => {
    const body = await parseBody(c, newWorker);
    const id = body.id ?? `gpu_${randomHex(6)}`;
    const workerUrl = allowedUrl(c, body.url);
    const secret = await sealed(c, body.secret);
    try {
      await c.env.DB.prepare("INSERT INTO gpu_workers (id, url, secret, models, enabled) VALUES (?, ?, ?, ?, ?)")
        .bind(id, workerUrl, secret, JSON.stringify(body.models), body.enabled ? 1 : 0)
        .run();
    } catch (err) {
      if (String(err).includes("UNIQUE")) throw conflict(`A worker with id ${id} exists`);
      throw err;
    }
    const row = await c.env.DB.prepare("SELECT * FROM gpu_workers WHERE id = ?").bind(id).first<WorkerRow>();
    invalidateWorkerRegistry();
    return c.json(await shown(c, row!), 201);
  })

  .patch("/workers/:id", async (c) => {
    const body = await parseBody(c, workerPatch);
    const row = await c.env.DB.prepare("SELECT * FROM gpu_workers WHERE id = ?").bind(c.req.param("id")).first<WorkerRow>();
    if (!row) throw notFoundHere("Worker");
    const next = {
      url: body.url === undefined ? row.url : allowedUrl(c, body.url),
      secret: body.secret === undefined ? row.secret : await sealed(c, body.secret),
      models: body.models ? JSON.stringify(body.models) : row.models,
      enabled: body.enabled === undefined ? row.enabled : body.enabled ? 1 : 0,
    };
    await c.env.DB.prepare("UPDATE gpu_workers SET url = ?, secret = ?, models = ?, enabled = ? WHERE id = ?")
      .bind(next.url, next.secret, next.models, next.enabled, row.id)
      .run();
    invalidateWorkerRegistry();
    return c.json(await shown(c, { ...row, ...next }));
  })

  .delete("/workers/:id", async (c) => {
    const result = await c.env.DB.prepare("DELETE FROM gpu_workers WHERE id = ?").bind(c.req.param("id")).run();
    if (result.meta.changes === 0) throw notFoundHere("Worker");
    return c.json({ deleted: true });
  });

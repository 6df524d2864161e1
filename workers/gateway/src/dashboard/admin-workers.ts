// Operator: the GPU worker registry. A worker's secret is write-only: it is never sent back,
// only its last four characters, so the page can tell which one is set.
import { Hono } from "hono";
import { z } from "zod";
import { randomHex } from "../auth/api-keys";
import { parseBody } from "./body";
import type { DashboardAppEnv } from "./env";
import { conflict, notFoundHere } from "./errors";

function parsesAsUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

const url = z
  .string()
  .trim()
  .max(500)
  .refine((u) => /^https?:\/\/[^\s]+$/.test(u) && parsesAsUrl(u), "an http(s) URL");
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

function shown(w: WorkerRow) {
  let models: unknown = [];
  try {
    models = JSON.parse(w.models);
  } catch {
    models = [];
  }
  return { id: w.id, url: w.url, secret_hint: `••••${w.secret.slice(-4)}`, models, enabled: !!w.enabled, created_at: w.created_at };
}

export const adminWorkerRoutes = new Hono<DashboardAppEnv>()
  .get("/workers", async (c) => {
    const { results } = await c.env.DB.prepare("SELECT * FROM gpu_workers ORDER BY id").all<WorkerRow>();
    return c.json({ data: results.map(shown) });
  })

  .post("/workers", async (c) => {
    const body = await parseBody(c, newWorker);
    const id = body.id ?? `gpu_${randomHex(6)}`;
    try {
      await c.env.DB.prepare("INSERT INTO gpu_workers (id, url, secret, models, enabled) VALUES (?, ?, ?, ?, ?)")
        .bind(id, body.url, body.secret, JSON.stringify(body.models), body.enabled ? 1 : 0)
        .run();
    } catch (err) {
      if (String(err).includes("UNIQUE")) throw conflict(`A worker with id ${id} exists`);
      throw err;
    }
    const row = await c.env.DB.prepare("SELECT * FROM gpu_workers WHERE id = ?").bind(id).first<WorkerRow>();
    return c.json(shown(row!), 201);
  })

  .patch("/workers/:id", async (c) => {
    const body = await parseBody(c, workerPatch);
    const row = await c.env.DB.prepare("SELECT * FROM gpu_workers WHERE id = ?").bind(c.req.param("id")).first<WorkerRow>();
    if (!row) throw notFoundHere("Worker");
    const next = {
      url: body.url ?? row.url,
      secret: body.secret ?? row.secret,
      models: body.models ? JSON.stringify(body.models) : row.models,
      enabled: body.enabled === undefined ? row.enabled : body.enabled ? 1 : 0,
    };
    await c.env.DB.prepare("UPDATE gpu_workers SET url = ?, secret = ?, models = ?, enabled = ? WHERE id = ?")
      .bind(next.url, next.secret, next.models, next.enabled, row.id)
      .run();
    return c.json(shown({ ...row, ...next }));
  })

  .delete("/workers/:id", async (c) => {
    const result = await c.env.DB.prepare("DELETE FROM gpu_workers WHERE id = ?").bind(c.req.param("id")).run();
    if (result.meta.changes === 0) throw notFoundHere("Worker");
    return c.json({ deleted: true });
  });

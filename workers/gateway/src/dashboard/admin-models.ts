// Operator: the model and price registry. Prices travel as integer micro-USD per 1M tokens,
// the unit they are stored in.
import { Hono } from "hono";
import { z } from "zod";
import { parseBody } from "./body";
import type { DashboardAppEnv } from "./env";
import { notFoundHere } from "./errors";

const price = z.number().int().min(0).max(1_000_000_000_000);
const modelPatch = z.object({
  cache_hit_price: price.optional(),
  cache_miss_price: price.optional(),
  output_price: price.optional(),
  off_peak_discount_percent: z.number().int().min(0).max(100).optional(),
  enabled: z.boolean().optional(),
});

const COLUMNS = `id, owned_by, context_length, default_max_tokens, max_max_tokens, is_reasoner, cache_hit_price, cache_miss_price,
  output_price, off_peak_discount_percent, enabled`;

export const adminModelRoutes = new Hono<DashboardAppEnv>()
  .get("/models", async (c) => {
    const { results } = await c.env.DB.prepare(`SELECT ${COLUMNS} FROM models ORDER BY id`).all();
    return c.json({ data: results });
  })

  .patch("/models/:id", async (c) => {
    const body = await parseBody(c, modelPatch);
    const sets: string[] = [];
    const args: unknown[] = [];
    for (const [column, value] of Object.entries(body)) {
      if (value === undefined) continue;
      sets.push(`${column} = ?`); // column names come from the schema above, never from input
      args.push(typeof value === "boolean" ? (value ? 1 : 0) : value);
    }
    const id = c.req.param("id");
    if (sets.length > 0) {
      const result = await c.env.DB.prepare(`UPDATE models SET ${sets.join(", ")} WHERE id = ?`).bind(...args, id).run();
      if (result.meta.changes === 0) throw notFoundHere("Model");
    }
    const row = await c.env.DB.prepare(`SELECT ${COLUMNS} FROM models WHERE id = ?`).bind(id).first();
    if (!row) throw notFoundHere("Model");
    return c.json(row);
  });

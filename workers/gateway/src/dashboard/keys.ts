// API keys of the signed-in account: create (the key is returned once), list, revoke.
import { Hono } from "hono";
import { z } from "zod";
import { keysChanged } from "../auth/keys-changed";
import { generateApiKey, randomHex } from "../auth/api-keys";
import { parseBody } from "./body";
import type { DashboardAppEnv } from "./env";
import { conflict, notFoundHere } from "./errors";
import type { KeyRow } from "./wire-types";

const MAX_ACTIVE_KEYS = 100;

const newKey = z.object({ name: z.string().trim().min(1, "give the key a name").max(64) });


export const keyRoutes = new Hono<DashboardAppEnv>()
  .get("/", async (c) => {
    const { results } = await c.env.DB.prepare(
      `SELECT id, name, display_prefix, last4, created_at, last_used_at, revoked_at
         FROM api_keys WHERE account_id = ? ORDER BY revoked_at IS NOT NULL, created_at DESC`,
    )
      .bind(c.get("session").accountId)
      .all<KeyRow>();
    return c.json({ data: results });
  })

  .post("/", async (c) => {
    const { name } = await parseBody(c, newKey);
    const accountId = c.get("session").accountId;
    const active = await c.env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys WHERE account_id = ? AND revoked_at IS NULL")
      .bind(accountId)
      .first<{ n: number }>();
    if ((active?.n ?? 0) >= MAX_ACTIVE_KEYS) throw conflict(`An account can hold at most ${MAX_ACTIVE_KEYS} active keys`);
    const k = await generateApiKey();
    const id = `key_${randomHex(12)}`;
    const createdAt = Date.now();
    await c.env.DB.prepare(
      "INSERT INTO api_keys (id, account_id, name, key_hash, display_prefix, last4, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .bind(id, accountId, name, k.keyHash, k.displayPrefix, k.last4, createdAt)
      .run();
    const row: KeyRow = { id, name, display_prefix: k.displayPrefix, last4: k.last4, created_at: createdAt, last_used_at: null, revoked_at: null };
    return c.json({ ...row, key: k.key }, 201);
  })

  .post("/:id/revoke", async (c) => {
    const result = await c.env.DB.prepare("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND account_id = ? AND revoked_at IS NULL")
      .bind(Date.now(), c.req.param("id"), c.get("session").accountId)
      .run();
    if (result.meta.changes === 0) throw notFoundHere("Active key");
    await keysChanged(c.env, c.get("session").accountId); // refused from the next request on
    return c.json({ revoked: true });
  });

// Operator: accounts with their balances and limits, grants, and rate limits of accounts and keys.
import { Hono } from "hono";
import { z } from "zod";
import { keysChanged } from "../auth/keys-changed";
import { ledgerFor } from "../stubs";
import { parseAmount } from "../billing/money";
import { parseBody } from "./body";
import type { DashboardAppEnv } from "./env";
import { invalidInput, notFoundHere } from "./errors";

const PAGE = 50;

const limit = z.number().int().min(0).max(1_000_000_000).nullable();
const limits = z.object({ rpm_limit: limit, tpm_limit: limit, concurrency_limit: limit });

const grant = z.object({
  kind: z.enum(["granted", "topped_up"]),
  amount: z.string().max(32),
  currency: z.string().regex(/^[A-Z]{3}$/).default("USD"),
  note: z.string().trim().max(200).optional(),
  expires_at: z.number().int().positive().nullable().optional(),
});

interface AccountRow {
  id: string;
  name: string;
  owner_email: string | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  concurrency_limit: number | null;
  created_at: number;
}

export const adminAccountRoutes = new Hono<DashboardAppEnv>()
  .get("/accounts", async (c) => {
    const q = (c.req.query("q") ?? "").trim();
    const offset = Math.max(0, Number(c.req.query("offset") ?? 0) || 0);
    const like = `%${q.replace(/[%_\\]/g, (m) => `\\${m}`)}%`;
    const { results } = await c.env.DB.prepare(
      `SELECT a.id, a.name, u.email AS owner_email, a.rpm_limit, a.tpm_limit, a.concurrency_limit, a.created_at
         FROM accounts a LEFT JOIN users u ON u.id = a.owner_user_id
        WHERE ? = '' OR a.id LIKE ? ESCAPE '\\' OR a.name LIKE ? ESCAPE '\\' OR u.email LIKE ? ESCAPE '\\'
        ORDER BY a.created_at DESC LIMIT ? OFFSET ?`,
    )
      .bind(q, like, like, like, PAGE, offset)
      .all<AccountRow>();
    const data = await Promise.all(
      results.map(async (a) => ({ ...a, balances: await ledgerFor(c.env, a.id).balances(a.id) })),
    );
    return c.json({ data, next_offset: results.length === PAGE ? offset + PAGE : null });
  })

  .get("/accounts/:id/keys", async (c) => {
    const { results } = await c.env.DB.prepare(
      `SELECT id, name, display_prefix, last4, rpm_limit, tpm_limit, concurrency_limit, created_at, last_used_at, revoked_at
         FROM api_keys WHERE account_id = ? ORDER BY created_at DESC`,
    )
      .bind(c.req.param("id"))
      .all();
    return c.json({ data: results });
  })

  .post("/accounts/:id/grants", async (c) => {
    const body = await parseBody(c, grant);
    let micros: number;
    try {
      micros = parseAmount(body.amount);
    } catch (err) {
      throw invalidInput(`amount: ${(err as Error).message}`, "amount");
    }
    if (micros <= 0) throw invalidInput("amount: must be more than zero", "amount");
    const accountId = c.req.param("id");
    const exists = await c.env.DB.prepare("SELECT id FROM accounts WHERE id = ?").bind(accountId).first();
    if (!exists) throw notFoundHere("Account");
    const note = body.note || `grant by ${c.get("session").email}`;
    const row = await c.env.DB.prepare(
      "INSERT INTO balance_credits (account_id, kind, currency, amount_micros, expires_at, note) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
    )
      .bind(accountId, body.kind, body.currency, micros, body.expires_at ?? null, note)
      .first<{ id: number }>();
    return c.json({ id: row?.id, account_id: accountId, kind: body.kind, amount_micros: micros }, 201);
  })

  .put("/accounts/:id/limits", async (c) => {
    const body = await parseBody(c, limits);
    const result = await c.env.DB.prepare("UPDATE accounts SET rpm_limit = ?, tpm_limit = ?, concurrency_limit = ? WHERE id = ?")
      .bind(body.rpm_limit, body.tpm_limit, body.concurrency_limit, c.req.param("id"))
      .run();
    if (result.meta.changes === 0) throw notFoundHere("Account");
    await keysChanged(c.env, c.req.param("id")); // in force from the next request on
    return c.json({ id: c.req.param("id"), ...body });
  })

  .put("/keys/:id/limits", async (c) => {
    const body = await parseBody(c, limits);
    const key = await c.env.DB.prepare("UPDATE api_keys SET rpm_limit = ?, tpm_limit = ?, concurrency_limit = ? WHERE id = ? RETURNING account_id")
      .bind(body.rpm_limit, body.tpm_limit, body.concurrency_limit, c.req.param("id"))
      .first<{ account_id: string }>();
    if (!key) throw notFoundHere("Key");
    await keysChanged(c.env, key.account_id); // in force from the next request on
    return c.json({ id: c.req.param("id"), ...body });
  });

// Reads a dashboard request body as JSON and checks it against a zod schema; the first
// problem becomes a 400 that names the field.
import type { Context } from "hono";
import type { z } from "zod";
import { readJsonBody } from "../middleware/json-body";
import type { DashboardAppEnv } from "./env";
import { invalidInput } from "./errors";

const DASHBOARD_BODY_LIMIT = 64 * 1024;

export async function parseBody<S extends z.ZodType>(c: Context<DashboardAppEnv>, schema: S): Promise<z.infer<S>> {
  const declared = Number(c.req.header("content-length") ?? NaN);
  if (Number.isFinite(declared) && declared > DASHBOARD_BODY_LIMIT) throw invalidInput("Request body too large");
  const { body } = await readJsonBody(c.req.raw);
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join(".") || null;
    throw invalidInput(field ? `${field}: ${issue?.message}` : (issue?.message ?? "Invalid body"), field);
  }
  return parsed.data;
}

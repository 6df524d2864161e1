// GET /models: the registry in OpenAI's list shape.
import { Hono } from "hono";
import { listModels } from "../db/models";
import { authenticate } from "../auth/authenticate";
import type { AppEnv } from "../env";

export const modelsRoute = new Hono<AppEnv>()
  .use(authenticate)
  .get("/", async (c) => {
  const models = await listModels(c.env.DB);
  return c.json({ object: "list", data: models.map((m) => ({ id: m.id, object: "model", owned_by: m.ownedBy })) });
});

// The models a signed-in person can filter usage by.
import { Hono } from "hono";
import { listModels } from "../db/models";
import type { DashboardAppEnv } from "./env";

export const modelRoutes = new Hono<DashboardAppEnv>().get("/", async (c) => {
  const models = await listModels(c.env.DB);
  return c.json({ data: models.map((m) => ({ id: m.id })) });
});

import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "sqlite",
  schema: "./workers/gateway/src/db/schema.ts",
  out: "./migrations",
});

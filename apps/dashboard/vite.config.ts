// The dashboard builds to static files under dist/dashboard, which the gateway serves at /dashboard/.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/dashboard/",
  build: { outDir: "dist/dashboard", emptyOutDir: true, target: "es2022", sourcemap: false },
});

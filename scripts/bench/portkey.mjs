// Portkey's open-source AI gateway (@portkey-ai/gateway, its Node entry) as a local process,
// for comparison: it routes to the fake worker as a custom-host OpenAI provider and does no
// auth, limits or billing of its own.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { repoRoot } from "../ensure-deps.mjs";

export async function startPortkey({ port, workerUrl }) {
  const pkg = createRequire(join(repoRoot, "package.json")).resolve("@portkey-ai/gateway/package.json");
  const entry = join(dirname(pkg), "build", "start-server.js");
  const shim = join(repoRoot, "scripts", "bench", "portkey-fetch-shim.mjs");
  const child = spawn(process.execPath, ["--import", shim, entry, `--port=${port}`, "--headless"], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, NODE_ENV: "production" },
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await fetch(url);
      break;
    } catch {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error("Portkey's gateway did not start");
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    url,
    // Portkey's way to address an OpenAI-compatible server of one's own.
    headers: { "x-portkey-provider": "openai", "x-portkey-custom-host": `${workerUrl}/v1` },
    close: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
    },
  };
}

// GPU workers that fail in the ways a deployed gateway meets, for gateway tests only:
//   edge  every answer is Cloudflare's own error page (403, HTML, cf-ray, "error code: 1003"),
//         what a Worker gets for an IP-literal URL or a tunnel hostname with nothing behind it
//   hole  /health is fine, but a completion request is accepted and never answered
//   sick  /health answers 503 {"status":"error", "error": ...}, as our worker does once its engine failed
//   draining  /health answers 200 {"status":"draining"}, as our worker does while it shuts down
// Each counts what it received at GET /__stats: {health, requests}.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export type BadWorkerKind = "edge" | "hole" | "sick" | "draining";

export interface BadWorker {
  url: string;
  close(): Promise<void>;
}

export async function startBadWorker(kind: BadWorkerKind): Promise<BadWorker> {
  const stats = { health: 0, requests: 0 };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (path === "/__stats") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(stats));
      return;
    }
    if (path === "/health") stats.health++;
    else stats.requests++;
    if (kind === "edge") {
      res.writeHead(403, { "content-type": "text/html; charset=UTF-8", "cf-ray": "8f0000000000abcd-AMS", server: "cloudflare" });
      res.end("<html><body>error code: 1003</body></html>");
    } else if (path === "/health") {
      const failed = kind === "sick";
      res.writeHead(failed ? 503 : 200, { "content-type": "application/json" });
      const health = { status: failed ? "error" : kind === "draining" ? "draining" : "ok", models: ["deepseek-chat"], running: 0, waiting: 0 };
      res.end(JSON.stringify(failed ? { ...health, error: "engine step failed: RuntimeError: CUDA error" } : health));
    } else if (kind === "sick") {
      res.writeHead(500, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "engine failed", type: "api_error", param: null, code: "insufficient_system_resource" } }));
    }
    // hole: the request is read and never answered
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// A stand-in for Turnstile's siteverify endpoint, for gateway tests only: the token
// "human-token" under the secret "turnstile-test-secret" passes, anything else fails, as
// siteverify answers (form-encoded POST, JSON {success, "error-codes"}). GET /__calls counts.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

export const TURNSTILE_TEST_SECRET = "turnstile-test-secret";
export const TURNSTILE_PASSING_TOKEN = "human-token";

export async function startFakeTurnstile(): Promise<{ url: string; close(): Promise<void> }> {
  let calls = 0;
  const server = createServer(async (req, res) => {
    if (req.method === "GET") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ calls }));
      return;
    }
    calls++;
    const form = await new Request("http://x", { method: "POST", headers: req.headers as HeadersInit, body: req as any, duplex: "half" } as RequestInit).formData();
    const success = form.get("secret") === TURNSTILE_TEST_SECRET && form.get("response") === TURNSTILE_PASSING_TOKEN;
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ success, "error-codes": success ? [] : ["invalid-input-response"] }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/turnstile/v0/siteverify`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

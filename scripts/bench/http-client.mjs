// The benchmark's client: plain node:http with keep-alive, cheaper per request than fetch, so
// the client takes as little as possible of the CPU the paths under test share with it.
import { Agent, request } from "node:http";

const agent = new Agent({ keepAlive: true, maxSockets: Infinity });

// POSTs JSON and reads the whole answer; resolves with the milliseconds until its last byte,
// the status, body and Server-Timing header.
export function post(url, headers, body) {
  const payload = JSON.stringify(body);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(payload), ...headers } },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ ms: performance.now() - started, status: res.statusCode, text, serverTiming: res.headers["server-timing"] ?? "" }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

// A streamed chat answer that arrived whole.
export const completeAnswer = (r) => r.status === 200 && r.text.includes("[DONE]") && r.text.includes('"finish_reason":"stop"');

export function closeClient() {
  agent.destroy();
}

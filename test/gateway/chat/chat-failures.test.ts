// Forwarding under failure: dead workers, workers dying mid-stream, no workers, clients leaving.
import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { invalidateWorkerRegistry } from "../../../workers/gateway/src/upstream/worker-registry";
import { readyAccount, registerWorker } from "../setup/fixtures";
import { BASE, fakeRequests, post, readSse, setupFakeWorker } from "./helpers";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: "deepseek-chat", messages: [{ role: "user", content }], ...extra });

async function onlyWorkers(...workers: [string, string, string][]) {
  await env.DB.prepare("DELETE FROM gpu_workers").run();
  for (const [id, url, secret] of workers) await registerWorker(id, url, secret);
  invalidateWorkerRegistry();
}

describe("forwarding failures", () => {
  it("retries on another worker when the connection fails before the first byte", async () => {
    const { key } = await readyAccount();
    // Three workers that refuse connections and one live worker: every request must succeed.
    await onlyWorkers(["dead-a", "http://127.0.0.1:9", "s"], ["dead-b", "http://127.0.0.1:9", "s"], ["dead-c", "http://127.0.0.1:9", "s"]);
    await setupFakeWorker("live");
    for (let i = 0; i < 4; i++) {
      const res = await post("/chat/completions", key, chat(`retry ${i} [[words:2]]`));
      expect(res.status).toBe(200);
      expect((await res.json<any>()).choices[0].message.content).toBe("Hello from");
    }
  });

  it("answers 503 Server Overloaded when no worker is available, and charges nothing", async () => {
    const { key } = await readyAccount(1_000_000);
    await onlyWorkers(["dead", "http://127.0.0.1:9", "s"]);
    const res = await post("/chat/completions", key, chat("hello"));
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ error: { message: "Server Overloaded", type: "server_overloaded_error", param: null, code: "server_overloaded" } });
    const balance = await (await SELF.fetch(`${BASE}/user/balance`, { headers: { authorization: `Bearer ${key}` } })).json<any>();
    expect(balance.balance_infos[0].total_balance).toBe("1.00");
  });

  it("ends a stream cleanly when the worker dies mid-stream", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const res = await post("/chat/completions", key, chat("hi [[words:6]] [[fail_after:3]]", { stream: true, stream_options: { include_usage: true } }));
    expect(res.status).toBe(200);
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    const last = events.at(-1);
    expect(last.choices[0].finish_reason).toBe("insufficient_system_resource");
    expect(events.map((e) => e.choices[0].delta?.content ?? "").join("")).toBe("Hello from the");
    expect(last.usage.completion_tokens).toBe(3);
  });

  it("reports a mid-stream failure in a non-streaming response as finish_reason insufficient_system_resource", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const res = await post("/chat/completions", key, chat("hi [[words:6]] [[fail_after:2]]"));
    expect(res.status).toBe(200);
    const body = await res.json<any>();
    expect(body.choices[0].finish_reason).toBe("insufficient_system_resource");
    expect(body.choices[0].message.content).toBe("Hello from");
  });

  it("sends keep-alive comments while the worker has not started, then the answer", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const res = await post("/chat/completions", key, chat("hi [[delay_first_byte:1200]] [[words:2]]", { stream: true }));
    const { keepAlives, done, events } = await readSse(res);
    expect(keepAlives).toBeGreaterThanOrEqual(2);
    expect(done).toBe(true);
    expect(events.at(-1).choices[0].finish_reason).toBe("stop");

    const plain = await post("/chat/completions", key, chat("hi [[delay_first_byte:1200]] [[words:2]]"));
    const text = await plain.text();
    expect(text.startsWith("\n")).toBe(true);
    expect(JSON.parse(text).choices[0].message.content).toBe("Hello from");
  });

  it("gives up when the worker does not start within the first-byte timeout", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const res = await post("/chat/completions", key, chat("hi [[delay_first_byte:6000]]", { stream: true }));
    const { events, done } = await readSse(res);
    expect(done).toBe(true);
    expect(events.at(-1).choices[0].finish_reason).toBe("insufficient_system_resource");
  });

  it("cancels the worker's request when the client disconnects", async () => {
    const { key } = await readyAccount();
    await setupFakeWorker();
    const marker = `cancel-${crypto.randomUUID()}`;
    const abort = new AbortController();
    const res = await SELF.fetch(`${BASE}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(chat(`${marker} [[words:40]] [[slow:100]]`, { stream: true })),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    abort.abort();
    let seen: any;
    for (let i = 0; i < 40; i++) {
      await sleep(100);
      seen = (await fakeRequests()).find((r) => JSON.stringify(r.body).includes(marker));
      if (seen?.cancelled) break;
    }
    expect(seen.cancelled).toBe(true);
    expect(seen.completed).toBe(false);
  });
});

// Two GPU workers: routing keeps an account's shared prefix on the worker that holds it (so the
// cache-hit rate with two workers stays close to one worker's), and a worker killed with
// SIGKILL mid-stream ends the client's stream cleanly, charges only what was delivered, and the
// next requests go to the live worker.
import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { expectedCost, longText, platform, requestIdOf, signUp, usageRow, usageRows, type TestAccount } from "./support";

let acct: TestAccount;
beforeAll(async () => {
  acct = await signUp();
  expect(platform().workers).toHaveLength(2);
});

const N = 6;
const messagesFor = (system: string, i: number) => [
  { role: "system" as const, content: system },
  { role: "user" as const, content: `Question ${i}: ${["why", "how", "when", "where", "who", "what"][i % 6]}?` },
];

describe("cache-affinity routing", () => {
  it("requests of one account sharing a prefix go to one worker; hits with two workers >= 90% of hits with one", async () => {
    const system = longText("affinity");
    const ids: string[] = [];
    let hitsTwoWorkers = 0;
    for (let i = 0; i < N; i++) {
      const { data, requestId } = await requestIdOf(acct.client.chat.completions.create({ model: "deepseek-chat", messages: messagesFor(system, i), max_tokens: 2 }));
      hitsTwoWorkers += (data.usage as any).prompt_cache_hit_tokens;
      ids.push(requestId);
    }
    const rows = await usageRows(ids);
    expect(new Set(rows.map((r) => r.worker_id)).size).toBe(1);

    // The same requests against one worker alone (its OpenAI-compatible API, a fresh cache namespace).
    const worker = platform().workers[0]!;
    const namespace = randomBytes(8).toString("hex");
    let hitsOneWorker = 0;
    for (let i = 0; i < N; i++) {
      const res = await fetch(`${worker.url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${worker.secret}`, "content-type": "application/json", "x-cache-namespace": namespace },
        body: JSON.stringify({ model: "deepseek-chat", messages: messagesFor(system, i), max_tokens: 2 }),
      });
      hitsOneWorker += ((await res.json()) as any).usage.prompt_cache_hit_tokens;
    }
    expect(hitsOneWorker).toBeGreaterThan(0);
    expect(hitsTwoWorkers).toBeGreaterThanOrEqual(0.9 * hitsOneWorker);
  });

  it("different prefixes spread over both workers", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const { requestId } = await requestIdOf(
        acct.client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: `${i} ${longText(`spread-${i}`, 8)}` }], max_tokens: 1 }),
      );
      ids.push(requestId);
    }
    const rows = await usageRows(ids);
    expect(new Set(rows.map((r) => r.worker_id))).toEqual(new Set(platform().workers.map((w) => w.id)));
  });
});

// Reads an SSE response as it arrives; onEvent may act (kill a worker) between events.
async function readSse(res: Response, onEvent: (event: any, count: number) => Promise<void> | void) {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const events: any[] = [];
  let done = false;
  let afterDone = "";
  for (;;) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buffer += decoder.decode(value, { stream: true });
    let at: number;
    while ((at = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, at).trim();
      buffer = buffer.slice(at + 2);
      if (done) afterDone += block;
      if (!block.startsWith("data: ")) continue;
      const data = block.slice(6);
      if (data === "[DONE]") {
        done = true;
        continue;
      }
      const event = JSON.parse(data);
      events.push(event);
      await onEvent(event, events.length);
    }
  }
  return { events, done, trailing: afterDone + buffer.trim() };
}

describe("a GPU worker killed mid-stream", () => {
  it("the stream ends cleanly, the client pays for what it received, the next requests go to the live worker", async () => {
    const { baseURL, workers } = platform();
    const before = await acct.balanceMicros();
    const res = await fetch(`${baseURL}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${acct.key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "deepseek-chat",
        messages: [{ role: "user", content: "Tell me a very long story." }],
        max_tokens: 4000,
        stream: true,
        stream_options: { include_usage: true },
        logprobs: true,
      }),
    });
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-ds-trace-id")!;

    let killed: (typeof workers)[number] | undefined;
    const { events, done, trailing } = await readSse(res, async (_event, count) => {
      if (count !== 8 || killed) return;
      // The worker generating this stream is the one with a running request.
      for (const w of workers) {
        const health = (await (await fetch(`${w.url}/health`, { headers: { authorization: `Bearer ${w.secret}` } })).json()) as any;
        if (health.running > 0) killed = w;
      }
      expect(killed).toBeDefined();
      process.kill(killed!.pid, "SIGKILL");
    });
    expect(killed).toBeDefined();
    expect(done).toBe(true);
    expect(trailing).toBe("");
    const last = events.at(-1);
    expect(last.choices[0].finish_reason).toBe("insufficient_system_resource");
    expect(events.slice(0, -1).every((e) => e.choices[0]?.finish_reason == null)).toBe(true);

    // What reached the client: one logprobs entry per delivered token.
    const delivered = events.reduce((n, e) => n + (e.choices[0]?.logprobs?.content?.length ?? 0), 0);
    const text = events.map((e) => e.choices[0]?.delta?.content ?? "").join("");
    expect(delivered).toBeGreaterThanOrEqual(8);
    expect(last.usage.completion_tokens).toBeLessThan(4000);

    const row = await usageRow(requestId);
    expect(row.status).toBe("failed");
    expect(row.worker_id).toBe(killed!.id);
    expect(row.completion_tokens).toBe(last.usage.completion_tokens);
    // Charged for the tokens it received (a token held back mid-character is at most a couple).
    expect(row.completion_tokens).toBeGreaterThanOrEqual(delivered);
    expect(row.completion_tokens - delivered).toBeLessThanOrEqual(2);
    expect(text.length).toBeGreaterThan(0);
    expect(row.cost_micros).toBe(
      expectedCost("deepseek-chat", { hit: row.cache_hit_tokens, miss: row.cache_miss_tokens, output: row.completion_tokens }, row.price_tier),
    );
    await expect.poll(() => acct.balanceMicros(), { timeout: 15_000 }).toBe(before - row.cost_micros);

    // Next requests (several prefixes, so some would prefer the dead worker) go to the live one.
    const live = workers.find((w) => w !== killed)!;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { data, requestId: id } = await requestIdOf(
        acct.client.chat.completions.create({ model: "deepseek-chat", messages: [{ role: "user", content: `after the crash ${i}` }], max_tokens: 2 }),
      );
      expect(data.choices[0]!.finish_reason).toMatch(/^(length|stop)$/);
      ids.push(id);
    }
    for (const r of await usageRows(ids)) {
      expect(r.status).toBe("ok");
      expect(r.worker_id).toBe(live.id);
    }
  });
});

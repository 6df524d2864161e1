// A GPU worker stand-in for the benchmark: answers at once, so what is measured is the path
// around it. Speaks the gateway <-> worker protocol (OpenAI-compatible SSE with DeepSeek usage
// fields, cumulative usage on every chunk when continuous_usage_stats is asked for).
import { createServer } from "node:http";

const WORDS = ["Hello", " from", " the", " bench", " worker", "."];

export async function startFakeWorker({ secret, completionTokens = 16 }) {
  const server = createServer(async (req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "GET" && path === "/health") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", models: ["deepseek-chat", "deepseek-reasoner"], running: 0, waiting: 0, free_blocks: 1000 }));
      return;
    }
    if (req.headers.authorization !== `Bearer ${secret}`) {
      res.writeHead(401).end();
      return;
    }
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw);
    const promptTokens = Math.ceil(JSON.stringify(body.messages ?? body.prompt ?? "").length / 4);
    const continuous = body.stream_options?.continuous_usage_stats === true;
    const id = String(req.headers["x-request-id"] ?? "bench");
    const created = Math.floor(Date.now() / 1000);
    let completion = 0;
    const usage = () => ({
      prompt_tokens: promptTokens,
      completion_tokens: completion,
      total_tokens: promptTokens + completion,
      prompt_cache_hit_tokens: 0,
      prompt_cache_miss_tokens: promptTokens,
      completion_tokens_details: { reasoning_tokens: 0 },
    });
    const chunk = (delta, finish) => {
      const c = { id, object: "chat.completion.chunk", created, model: body.model, system_fingerprint: "fp_bench", choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] };
      if (continuous || finish) c.usage = usage();
      return `data: ${JSON.stringify(c)}\n\n`;
    };
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    let out = chunk({ role: "assistant", content: "" }, null);
    const n = Math.min(completionTokens, Number(body.max_tokens ?? completionTokens));
    for (let i = 0; i < n; i++) {
      completion++;
      out += chunk({ content: WORDS[i % WORDS.length] }, null);
    }
    out += chunk({ content: "" }, n < completionTokens ? "length" : "stop");
    res.end(`${out}data: [DONE]\n\n`);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

// Run on its own (`node fake-worker.mjs <secret>`) so that its event loop is not the benchmark
// client's: prints {"url": ...} once listening.
if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split("/").pop())) {
  const worker = await startFakeWorker({ secret: process.argv[2] });
  console.log(JSON.stringify({ url: worker.url }));
  process.on("SIGTERM", () => worker.close().then(() => process.exit(0)));
}

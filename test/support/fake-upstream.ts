// A deterministic stand-in for a GPU worker, for gateway tests only (never what `npm start` runs).
// It speaks the gateway <-> worker protocol of architecture.md: OpenAI-compatible streaming with
// DeepSeek usage fields, cumulative usage on every chunk when continuous_usage_stats is asked for.
//
// Behaviour is steered by directives in the last user message (or the FIM prompt):
//   [[words:N]]            answer with N words (default 6), one chunk each
//   [[reasoning]]          stream reasoning_content first (also implied by model deepseek-reasoner)
//   [[tool_call]]          call the first tool with {"city":"Paris"} in three argument pieces
//   [[fail_after:N]]       destroy the connection after N content chunks (a worker dying mid-stream)
//   [[delay_first_byte:MS]] wait before answering at all (queueing)
//   [[slow:MS]]            wait between chunks
//   [[status:CODE]]        answer with that HTTP status and an error envelope
//   [[no_usage]]           never send usage (an engine that reports none)
//   [[usage_until:N]]      send usage only until N content chunks were sent, then none (an engine that stops reporting it)
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  cancelled: boolean;
  completed: boolean;
  // Which TCP connection carried it (numbered in order of arrival): shows connection reuse.
  connection: number;
}

export interface FakeUpstream {
  url: string;
  secret: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function directive(text: string, name: string): string | null {
  const match = new RegExp(`\\[\\[${name}(?::([^\\]]*))?\\]\\]`).exec(text);
  return match ? (match[1] ?? "") : null;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((p: any) => (typeof p?.text === "string" ? p.text : "")).join("");
  return "";
}

// Deterministic prompt size: a quarter of the UTF-8 bytes, plus template overhead.
export function fakePromptTokens(promptText: string): number {
  return Math.ceil(Buffer.byteLength(promptText, "utf8") / 4) + 4;
}

const WORDS = ["Hello", " from", " the", " fake", " worker", ".", " More", " words", " follow", " here"];

export async function startFakeUpstream(options: { secret?: string; port?: number } = {}): Promise<FakeUpstream> {
  const secret = options.secret ?? "test-worker-secret";
  const requests: RecordedRequest[] = [];
  // Per cache namespace, the prompts seen so far: a later prompt sharing a prefix gets cache hits.
  const seenPrompts = new Map<string, string[]>();

  const connectionIds = new WeakMap<object, number>();
  let connections = 0;
  const server: Server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method === "GET" && path === "/health") {
      const running = requests.filter((r) => !r.completed && !r.cancelled).length;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", models: ["deepseek-chat", "deepseek-reasoner"], running, waiting: 0, free_blocks: 1000 }));
      return;
    }
    if (req.method === "GET" && path === "/__requests") {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(requests));
      return;
    }
    if (req.headers.authorization !== `Bearer ${secret}`) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "bad worker secret", type: "authentication_error", param: null, code: "invalid_api_key" } }));
      return;
    }
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const body = JSON.parse(raw);
    const record: RecordedRequest = { path, headers: req.headers, body, cancelled: false, completed: false, connection: connectionIds.get(req.socket) ?? 0 };
    requests.push(record);
    res.on("close", () => {
      if (!record.completed) record.cancelled = true;
    });
    await answer(body, path, req, res, record);
  });

  async function answer(body: any, path: string, req: IncomingMessage, res: ServerResponse, record: RecordedRequest) {
    const isFim = path === "/v1/completions";
    const messages: any[] = body.messages ?? [];
    const promptText = isFim ? `${body.prompt ?? ""}${body.suffix ?? ""}` : messages.map((m) => textOf(m.content)).join("\n");
    const lastUser = isFim ? String(body.prompt ?? "") : textOf([...messages].reverse().find((m) => m.role === "user")?.content);

    const status = directive(lastUser, "status");
    if (status) {
      res.writeHead(Number(status), { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: `fake worker status ${status}`, type: "api_error", param: null, code: "fake" } }));
      record.completed = true;
      return;
    }
    const delay = Number(directive(lastUser, "delay_first_byte") ?? 0);
    if (delay) await sleep(delay);
    if (res.destroyed) return;

    const namespace = String(req.headers["x-cache-namespace"] ?? "");
    const promptTokens = fakePromptTokens(promptText);
    const previous = seenPrompts.get(namespace) ?? [];
    let commonBytes = 0;
    for (const p of previous) {
      let i = 0;
      while (i < p.length && i < promptText.length && p[i] === promptText[i]) i++;
      commonBytes = Math.max(commonBytes, i);
    }
    const hit = Math.min(Math.floor(commonBytes / 4 / 64) * 64, Math.floor((promptTokens - 1) / 64) * 64);
    seenPrompts.set(namespace, [...previous, promptText]);

    const words = Number(directive(lastUser, "words") ?? 6);
    const failAfter = directive(lastUser, "fail_after");
    const slow = Number(directive(lastUser, "slow") ?? 0);
    const reasoning = directive(lastUser, "reasoning") !== null || body.model === "deepseek-reasoner";
    const toolCall = directive(lastUser, "tool_call") !== null && Array.isArray(body.tools) && body.tools.length > 0;
    const wantLogprobs = isFim ? typeof body.logprobs === "number" : body.logprobs === true;
    const topN = isFim ? Number(body.logprobs ?? 0) : Number(body.top_logprobs ?? 0);
    const continuous = body.stream_options?.continuous_usage_stats === true;
    const noUsage = directive(lastUser, "no_usage") !== null;
    const usageUntil = Number(directive(lastUser, "usage_until") ?? Infinity);
    let contentChunks = 0;
    const id = String(req.headers["x-request-id"] ?? `fake-${Date.now()}`);
    const created = Math.floor(Date.now() / 1000);

    let completion = 0;
    let reasoningTokens = 0;
    const usage = () => ({
      prompt_tokens: promptTokens,
      completion_tokens: completion,
      total_tokens: promptTokens + completion,
      prompt_cache_hit_tokens: hit,
      prompt_cache_miss_tokens: promptTokens - hit,
      completion_tokens_details: { reasoning_tokens: reasoningTokens },
    });
    const logprobsFor = (token: string) =>
      isFim
        ? { tokens: [token], token_logprobs: [-0.5], top_logprobs: [Object.fromEntries([[token, -0.5]])], text_offset: [0] }
        : {
            content: [
              {
                token,
                logprob: -0.5,
                bytes: [...Buffer.from(token, "utf8")],
                top_logprobs: Array.from({ length: topN }, (_, k) => ({ token: k === 0 ? token : `alt${k}`, logprob: -0.5 - k, bytes: [...Buffer.from(k === 0 ? token : `alt${k}`)] })),
              },
            ],
          };

    const chunk = (delta: Record<string, unknown>, finish: string | null, logprobs: unknown = null) => {
      const base: any = isFim
        ? { id, object: "text_completion", created, model: body.model, choices: [{ index: 0, text: delta.content ?? "", logprobs, finish_reason: finish }] }
        : { id, object: "chat.completion.chunk", created, model: body.model, system_fingerprint: "fp_fake", choices: [{ index: 0, delta, logprobs, finish_reason: finish }] };
      if (delta.content) contentChunks++;
      if ((continuous || finish) && !noUsage && contentChunks <= usageUntil) base.usage = usage();
      return `data: ${JSON.stringify(base)}\n\n`;
    };

    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const send = async (text: string) => {
      if (res.destroyed) return false;
      res.write(text);
      if (slow) await sleep(slow);
      return !res.destroyed;
    };

    if (!isFim && !(await send(chunk({ role: "assistant", content: "" }, null)))) return;
    if (reasoning && !isFim) {
      for (const piece of ["Let", " me", " think", "."]) {
        reasoningTokens++;
        completion++;
        if (!(await send(chunk({ reasoning_content: piece }, null)))) return;
      }
    }
    if (toolCall) {
      const name = body.tools[0].function.name;
      const pieces = ['{"city"', ': "Par', 'is"}'];
      completion++;
      if (!(await send(chunk({ tool_calls: [{ index: 0, id: "call_fake_0", type: "function", function: { name, arguments: "" } }] }, null)))) return;
      for (const piece of pieces) {
        completion++;
        if (!(await send(chunk({ tool_calls: [{ index: 0, function: { arguments: piece } }] }, null)))) return;
      }
      completion++;
      await send(chunk({}, "tool_calls"));
    } else {
      const stops: string[] = typeof body.stop === "string" ? [body.stop] : Array.isArray(body.stop) ? body.stop : [];
      for (let i = 0; i < words; i++) {
        if (failAfter !== null && i === Number(failAfter)) {
          // Let what was written reach the gateway, then die like a crashed process.
          await sleep(150);
          res.destroy();
          return;
        }
        const token = WORDS[i % WORDS.length]!;
        const stop = stops.find((s) => token.includes(s));
        if (stop) {
          // Like a real worker: the stop string never reaches the client; say which one matched.
          completion++;
          const done: any = JSON.parse(chunk({ content: "" }, "stop").slice(6));
          done.choices[0].stop_reason = stop;
          await send(`data: ${JSON.stringify(done)}\n\n`);
          record.completed = true;
          res.end("data: [DONE]\n\n");
          return;
        }
        completion++;
        if (!(await send(chunk({ content: token }, null, wantLogprobs ? logprobsFor(token) : null)))) return;
      }
      const finish = words >= Number(body.max_tokens ?? Infinity) ? "length" : "stop";
      await send(chunk({ content: "" }, finish));
    }
    if (res.destroyed) return;
    record.completed = true;
    res.end("data: [DONE]\n\n");
  }

  server.on("connection", (socket) => connectionIds.set(socket, ++connections));
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    secret,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

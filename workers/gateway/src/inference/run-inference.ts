// The money-and-forwarding half of every inference endpoint, after the request has been
// validated and its prompt counted:
//   rateLimit -> reserve -> forward (keep-alive while queued) -> stream back -> settle
// A request refused before forwarding costs nothing; one that fails or is aborted later costs
// exactly what the client received (the prompt and the completion tokens delivered).
import type { Context } from "hono";
import type { ReserveResult } from "../billing/account-ledger";
import { ledgerFor } from "../stubs";
import { maxCompletionTokens, worstCaseCostMicros } from "../billing/pricing";
import { HOLD_TTL_MS } from "../billing/holds";
import { usageFromWire } from "../billing/usage";
import type { Model } from "../db/schema";
import { intSetting, type AppEnv } from "../env";
import { ApiError, insufficientBalance } from "../errors/api-error";
import { admitKey, combine, type Admission } from "../limits/admit";
import { connectUpstream, type UpstreamConnection } from "../upstream/connect";
import type { ResponseEncoder, WireUsage } from "./encoder";
import { keepHoldAlive } from "./hold-heartbeat";
import { settleOrQueue } from "./settle-or-queue";
import { timer } from "./timers";
import { UsageCounter, type Outcome } from "./usage-counter";

export interface InferenceJob {
  endpoint: "chat.completions" | "completions" | "anthropic.messages";
  model: Model;
  upstreamPath: "/v1/chat/completions" | "/v1/completions";
  upstreamBody: Record<string, unknown>;
  // Exact prompt tokens (the gateway's tokenizer and chat template).
  promptTokens: number;
  maxTokens: number;
  // The start of the prompt: requests sharing it go to the worker that has it cached.
  affinityText: string;
}

const DEFAULT_KEEPALIVE_MS = 5_000;
const DEFAULT_FIRST_BYTE_TIMEOUT_MS = 10 * 60_000;
const DEFAULT_HOLD_HEARTBEAT_MS = 5 * 60_000;

function timing(c: Context<AppEnv>) {
  const hold = {
    intervalMs: intSetting(c.env, "HOLD_HEARTBEAT_MS", DEFAULT_HOLD_HEARTBEAT_MS),
    holdMs: intSetting(c.env, "HOLD_TTL_MS", HOLD_TTL_MS),
  };
  // A hold must be extended before it lapses, or a long stream loses its money mid-way.
  if (hold.intervalMs >= hold.holdMs) throw new Error(`HOLD_HEARTBEAT_MS (${hold.intervalMs}) must be less than HOLD_TTL_MS (${hold.holdMs})`);
  return {
    keepAliveMs: intSetting(c.env, "KEEPALIVE_INTERVAL_MS", DEFAULT_KEEPALIVE_MS),
    firstByteTimeoutMs: intSetting(c.env, "FIRST_BYTE_TIMEOUT_MS", DEFAULT_FIRST_BYTE_TIMEOUT_MS),
    hold,
  };
}

const toWire = (u: ReturnType<typeof usageFromWire>): WireUsage => ({
  prompt_tokens: u.promptTokens,
  completion_tokens: u.completionTokens,
  total_tokens: u.promptTokens + u.completionTokens,
  prompt_cache_hit_tokens: u.cacheHitTokens,
  prompt_cache_miss_tokens: u.cacheMissTokens,
  prompt_tokens_details: { cached_tokens: u.cacheHitTokens },
  completion_tokens_details: { reasoning_tokens: u.reasoningTokens },
});

export async function runInference(c: Context<AppEnv>, job: InferenceJob, encoder: ResponseEncoder): Promise<Response> {
  const requestId = c.get("traceId");
  // This isolate's copy of the key: its account and id (which never change) are right; whether
  // it is still live, and its limits, the ledger decides below.
  const known = c.get("auth");
  const startedAt = Date.now();
  const worstCaseTokens = job.promptTokens + maxCompletionTokens(job.model, job.maxTokens);
  const worstCaseMicros = worstCaseCostMicros(job.model, job.promptTokens, maxCompletionTokens(job.model, job.maxTokens));
  const ledger = ledgerFor(c.env, known.accountId);
  const { keepAliveMs, firstByteTimeoutMs, hold } = timing(c);

  // Key check, rateLimit and reserve: one call to the account's ledger checks the key, admits
  // the request under the account's current limits and holds its worst-case cost; a key with
  // limits of its own is then admitted by its limiter. A refused key has nothing held or admitted.
  const gateStarted = performance.now();
  let opened: ReserveResult;
  try {
    opened = await ledger.reserve({ accountId: known.accountId, requestId, amountMicros: worstCaseMicros, holdMs: hold.holdMs, keyId: known.keyId, admit: { tokens: worstCaseTokens } });
  } catch (err) {
    return errorOut(encoder, err, requestId); // the ledger failed: nothing was held
  }
  const auth = c.get("keyCheck").accept(opened.key ?? null); // refused: throws the 401
  c.set("auth", auth);
  const [admitted] = await Promise.allSettled([
    admitKey(c.env, auth, requestId, worstCaseTokens).then((key) => combine(c.env, auth, requestId, opened.admission!, key, { finishAccount: false })),
  ]);
  c.get("timings").admit_reserve = performance.now() - gateStarted;
  if (admitted.status === "rejected") {
    // Rate limited (by either scope, the other undone) or a Durable Object failed.
    if (opened.ok) await ledger.release(requestId);
    return errorOut(encoder, admitted.reason, requestId);
  }
  const admission: Admission = admitted.value;
  if (!opened.ok) {
    await admission.finish(0);
    return errorOut(encoder, insufficientBalance(), requestId, admission.headers);
  }
  const heartbeat = keepHoldAlive(() => ledgerFor(c.env, auth.accountId), auth.accountId, requestId, hold);
  const refuse = async (err: unknown) => {
    heartbeat.stop();
    await ledger.release(requestId);
    await admission.finish(0);
    return errorOut(encoder, err, requestId, admission.headers);
  };

  // forward
  const abort = new AbortController();
  const connecting = connectUpstream(
    c.env,
    {
      model: job.model.id,
      path: job.upstreamPath,
      body: job.upstreamBody,
      requestId,
      cacheNamespace: auth.cacheNamespace,
      affinityKey: `${auth.accountId}|${job.affinityText}`,
    },
    abort.signal,
    (p) => c.executionCtx.waitUntil(p),
  );
  connecting.catch(() => undefined);
  const forwardStarted = performance.now();

  // A worker that answers within one keep-alive interval gets a normal response (real status
  // codes for errors); a queued request gets a started response with keep-alives instead.
  const waiting = timer(keepAliveMs);
  const early = await Promise.race([connecting.then((conn) => ({ conn }), (error) => ({ error })), waiting.done.then(() => null)]);
  waiting.cancel(); // a timer per request left running for seconds costs the runtime work
  if (early && "error" in early) return refuse(early.error);
  if (early) c.get("timings").first_event = performance.now() - forwardStarted;

  const encoderText = new TextEncoder();
  const usage = new UsageCounter(job.promptTokens);
  let clientGone = false;

  // The response body: a native stream the pump writes into (a JavaScript ReadableStream fed
  // by a controller costs the runtime more per chunk). A client that disconnects errors its
  // writable side: the worker's generation is stopped then.
  const { readable: body, writable } = new IdentityTransformStream();
  const writer = writable.getWriter();
  writer.closed.catch(() => {
    clientGone = true;
    abort.abort();
  });
  const send = (text: string) => {
    if (clientGone || text === "") return;
    writer.write(encoderText.encode(text)).catch(() => undefined); // a failed write: see writer.closed
  };
  const pump = async (): Promise<{ outcome: Outcome; conn: UpstreamConnection | null }> => {
    let conn: UpstreamConnection | null = early?.conn ?? null;
    if (!conn) {
      const keepAlive = setInterval(() => send(encoder.keepAlive()), keepAliveMs);
      send(encoder.keepAlive());
      const firstByte = timer(firstByteTimeoutMs);
      try {
        const result = await Promise.race([connecting, firstByte.done.then(() => "timeout" as const)]);
        if (result === "timeout") {
          abort.abort();
          send(encoder.fail(null));
          return { outcome: "failed", conn: null };
        }
        conn = result;
      } catch {
        send(encoder.fail(null));
        return { outcome: clientGone ? "aborted" : "failed", conn: null };
      } finally {
        clearInterval(keepAlive);
        firstByte.cancel();
      }
    }
    try {
      // One write per upstream batch, not per event: each write is a trip through the
      // runtime's I/O, and a worker often sends several events at once.
      for await (const payloads of conn.events) {
        if (clientGone) return { outcome: "aborted", conn };
        let text = "";
        let upstreamDone = false;
        for (const payload of payloads) {
          if (payload.trim() === "[DONE]") {
            upstreamDone = true;
            break;
          }
          let chunk: any;
          try {
            chunk = JSON.parse(payload);
          } catch {
            continue;
          }
          usage.add(chunk, chunk?.usage ? toWire(usageFromWire(chunk.usage)) : null);
          const out = encoder.chunk(chunk, usage.forChunk(chunk));
          text += out;
          if (out !== "") usage.sent();
        }
        send(text);
        if (upstreamDone) break;
      }
      if (clientGone) return { outcome: "aborted", conn };
      send(encoder.finish(usage.charged("ok")?.usage ?? null));
      return { outcome: "ok", conn };
    } catch {
      if (clientGone) return { outcome: "aborted", conn };
      send(encoder.fail(usage.charged("failed")?.usage ?? null));
      return { outcome: "failed", conn };
    }
  };

  const settle = pump().then(async ({ outcome, conn }) => {
    heartbeat.stop();
    if (!clientGone) writer.close().catch(() => undefined);
    const drained = conn?.release();
    const charged = conn ? usage.charged(outcome) : null;
    if (!conn || !charged) {
      // A fresh stub: the ledger may have restarted while the request ran.
      await Promise.all([ledgerFor(c.env, auth.accountId).release(requestId), admission.finish(0), drained]);
      return;
    }
    const billed = usageFromWire(charged.usage);
    // Settling also finishes the account's rate-limit lease (in the ledger); a key's own
    // limiter is finished beside it. Settling is idempotent by request id, so a settlement the
    // ledger could not take is queued and made again until it lands.
    const settled = settleOrQueue(c.env, {
      accountId: auth.accountId,
      requestId,
      keyId: auth.keyId,
      model: job.model.id,
      endpoint: job.endpoint,
      usage: billed,
      usageSource: charged.source,
      status: outcome,
      workerId: conn.worker.id,
      startedAt,
      completedAt: Date.now(),
    });
    await Promise.all([settled, admission.finish(billed.promptTokens + billed.completionTokens), drained]);
  });
  c.executionCtx.waitUntil(settle.catch((err) => console.error(`trace ${requestId}: settlement failed`, err)));

  const headers = new Headers({ "content-type": encoder.contentType, "cache-control": "no-cache", ...admission.headers });
  return new Response(body, { status: 200, headers });
}

function errorOut(encoder: ResponseEncoder, err: unknown, traceId: string, headers: Record<string, string> = {}): Response {
  const error = err instanceof ApiError ? err : new ApiError(500, "Internal Server Error, please retry later");
  if (!(err instanceof ApiError)) console.error(`trace ${traceId}: inference error`, err);
  const response = encoder.errorResponse(error, traceId);
  for (const [k, v] of Object.entries(headers)) if (!response.headers.has(k)) response.headers.set(k, v);
  return response;
}

// Forwards a request to a GPU worker and waits for its first SSE event. A connection that
// fails before that first event (refused, reset, no response headers within the connect
// timeout, a 5xx, an answer from Cloudflare's edge instead of the worker, a stream that ends
// empty) is retried on another worker; when none is left the client gets 503 `Server Overloaded`.
import { ApiError, serverOverloaded } from "../errors/api-error";
import { pickWorker } from "./pick-worker";
import { readSseData } from "./sse";
import { listWorkers, loadOf, markDown, markUp, refreshHealth, type WorkerEntry } from "./worker-registry";
import { intSetting, type Env } from "../env";

export interface UpstreamRequest {
  model: string;
  path: "/v1/chat/completions" | "/v1/completions";
  body: Record<string, unknown>;
  requestId: string;
  cacheNamespace: string;
  affinityKey: string;
}

export interface UpstreamConnection {
  worker: WorkerEntry;
  // Upstream SSE payloads in the batches they arrived in, starting with the first one already received.
  events: AsyncGenerator<string[]>;
  // Call exactly once when the request is over: frees this isolate's load slot and reads what
  // is left of the worker's answer (after [DONE], only the end of the stream), so that the
  // runtime can use the connection for the next request instead of opening a new one.
  release(): Promise<void>;
}

const MAX_ATTEMPTS = 4;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
// A worker that keeps its answer open after [DONE] for longer than this loses the connection.
const DRAIN_TIMEOUT_MS = 1_000;

// The worker (ours, or an OpenAI-compatible engine) refuses a request with a JSON error body.
// A 4xx that is not JSON came from something in between: Cloudflare's edge (error 1003 for an
// IP literal, 1016 for a missing tunnel hostname, 403/409 pages), a proxy. That is the route
// to the worker failing, not the worker judging the request.
function refusedByWorker(response: Response): boolean {
  if (response.status < 400 || response.status >= 500 || response.status === 401 || response.status === 429) return false;
  return (response.headers.get("content-type") ?? "").includes("json");
}

// fetch() with a deadline on the response headers only: the body may then stream for as long
// as the generation takes.
async function fetchWithConnectTimeout(url: string, init: RequestInit, signal: AbortSignal, timeoutMs: number): Promise<Response> {
  const abort = new AbortController();
  const forward = () => abort.abort(signal.reason);
  if (signal.aborted) forward();
  signal.addEventListener("abort", forward);
  const timer = setTimeout(() => abort.abort(new Error(`no response headers within ${timeoutMs} ms`)), timeoutMs);
  try {
    return await fetch(url, { ...init, signal: abort.signal });
  } finally {
    clearTimeout(timer);
  }
}

async function upstreamError(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const parsed = JSON.parse(text) as { error?: { message?: string; param?: string | null } };
    if (parsed.error?.message) return new ApiError(response.status as 400, parsed.error.message, parsed.error.param ?? null);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status as 400, text || `Upstream error ${response.status}`);
}

export async function connectUpstream(
  env: Env,
  request: UpstreamRequest,
  signal: AbortSignal,
  waitUntil: (p: Promise<unknown>) => void,
): Promise<UpstreamConnection> {
  const connectTimeoutMs = intSetting(env, "UPSTREAM_CONNECT_TIMEOUT_MS", DEFAULT_CONNECT_TIMEOUT_MS);
  const workers = await listWorkers(env);
  await refreshHealth(env, workers, waitUntil);
  const tried = new Set<string>();

  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const worker = pickWorker(workers, request.model, request.affinityKey, tried);
    if (!worker) break;
    tried.add(worker.id);
    const load = loadOf(worker.id);
    load.outstanding++;
    let released = false;
    const release = () => {
      if (!released) load.outstanding--;
      released = true;
    };

    try {
      const response = await fetchWithConnectTimeout(`${worker.url}${request.path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${worker.secret}`,
          "x-request-id": request.requestId,
          "x-cache-namespace": request.cacheNamespace,
        },
        body: JSON.stringify(request.body),
      }, signal, connectTimeoutMs);
      if (refusedByWorker(response)) {
        // The worker refused this request itself (e.g. its own context check): not a worker fault.
        release();
        throw await upstreamError(response);
      }
      if (!response.ok || !response.body) {
        await response.body?.cancel().catch(() => undefined);
        release();
        markDown(env, worker, waitUntil);
        continue;
      }
      const events = readSseData(response.body);
      const first = await events.next();
      if (first.done) {
        release();
        markDown(env, worker, waitUntil);
        continue;
      }
      markUp(worker.id);
      const body = response.body;
      return {
        worker,
        events: prepend(first.value, events),
        release: () => {
          release();
          return drain(body);
        },
      };
    } catch (err) {
      release();
      if (err instanceof ApiError) throw err;
      if (signal.aborted) throw err;
      markDown(env, worker, waitUntil);
    }
  }
  throw serverOverloaded();
}

// Reads a body to its end, if nobody holds it; gives up (closing it) after DRAIN_TIMEOUT_MS.
async function drain(body: ReadableStream<Uint8Array>): Promise<void> {
  if (body.locked) return;
  const reader = body.getReader();
  const timeout = setTimeout(() => void reader.cancel().catch(() => undefined), DRAIN_TIMEOUT_MS);
  try {
    while (!(await reader.read()).done);
  } catch {
    // cancelled or failed: the connection is not reused, nothing else to do
  } finally {
    clearTimeout(timeout);
  }
}

async function* prepend<T>(first: T, rest: AsyncGenerator<T>): AsyncGenerator<T> {
  yield first;
  yield* rest;
}

// Forwards a request to a GPU worker and waits for its first SSE event. A connection that
// fails before that first event (refused, reset, a 5xx, a stream that ends empty) is retried
// on another worker; when none is left the client gets 503 `Server Overloaded`.
import { ApiError, serverOverloaded } from "../errors/api-error";
import { pickWorker } from "./pick-worker";
import { readSseData } from "./sse";
import { listWorkers, loadOf, markDown, markUp, refreshHealth, type WorkerEntry } from "./worker-registry";
import type { Env } from "../env";

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
// A worker that keeps its answer open after [DONE] for longer than this loses the connection.
const DRAIN_TIMEOUT_MS = 1_000;

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
  const workers = await listWorkers(env);
  for (const w of workers) refreshHealth(w, waitUntil);
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
      const response = await fetch(`${worker.url}${request.path}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${worker.secret}`,
          "x-request-id": request.requestId,
          "x-cache-namespace": request.cacheNamespace,
        },
        body: JSON.stringify(request.body),
        signal,
      });
      if (response.status >= 400 && response.status < 500 && response.status !== 401 && response.status !== 429) {
        // The worker refused this request itself (e.g. its own context check): not a worker fault.
        release();
        throw await upstreamError(response);
      }
      if (!response.ok || !response.body) {
        await response.body?.cancel().catch(() => undefined);
        release();
        markDown(worker.id);
        continue;
      }
      const events = readSseData(response.body);
      const first = await events.next();
      if (first.done) {
        release();
        markDown(worker.id);
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
      markDown(worker.id);
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

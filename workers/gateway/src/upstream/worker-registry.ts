// The GPU worker registry: rows of gpu_workers (URL, secret, models) and the fleet's health.
// Health and reported load come from the WorkerHealth Durable Object, which every isolate
// shares; what only this isolate knows is its own requests in flight on each worker and the
// connections it just saw fail (so a retry in this request skips them at once).
import type { Env } from "../env";
import type { HealthTarget, WorkerHealthView } from "./worker-health";
import { openWorkerSecret } from "./worker-secret";

export interface WorkerEntry {
  id: string;
  url: string;
  secret: string;
  models: string[];
}

export interface WorkerLoad {
  outstanding: number; // requests this isolate has in flight on the worker
  downUntil: number; // a connection this isolate saw fail takes the worker out here for a while
}

const ROWS_TTL_MS = 2_000;
const DOWN_FOR_MS = 10_000;
// How old this isolate's copy of the shared health view may get before it asks again.
const HEALTH_TTL_MS = 2_000;

let cached: { at: number; rows: WorkerEntry[] } | null = null;
let shared: { at: number; view: Record<string, WorkerHealthView>; asking: boolean } | null = null;
const loads = new Map<string, WorkerLoad>();

export function invalidateWorkerRegistry(): void {
  cached = null;
  shared = null;
  loads.clear();
}

export async function listWorkers(env: Env): Promise<WorkerEntry[]> {
  if (cached && Date.now() - cached.at < ROWS_TTL_MS) return cached.rows;
  const { results } = await env.DB.prepare("SELECT id, url, secret, models FROM gpu_workers WHERE enabled = 1 ORDER BY id").all<{
    id: string;
    url: string;
    secret: string;
    models: string;
  }>();
  // A row whose secret cannot be opened (sealed under another key) leaves only that worker out
  // of rotation, not the whole fleet.
  const opened = await Promise.all(
    results.map(async (r) => {
      try {
        return { id: r.id, url: r.url.replace(/\/+$/, ""), secret: await openWorkerSecret(r.secret, env.WORKER_SECRET_KEY), models: JSON.parse(r.models) as string[] };
      } catch (err) {
        console.error(`GPU worker ${r.id}: its secret cannot be opened with WORKER_SECRET_KEY; not routed to`, err);
        return null;
      }
    }),
  );
  const rows = opened.filter((r) => r !== null);
  cached = { at: Date.now(), rows };
  return rows;
}

export function loadOf(workerId: string): WorkerLoad {
  let load = loads.get(workerId);
  if (!load) {
    load = { outstanding: 0, downUntil: 0 };
    loads.set(workerId, load);
  }
  return load;
}

const healthOf = (workerId: string) => shared?.view[workerId];
export const reportedLoad = (workerId: string) => healthOf(workerId)?.load ?? 0;
export const isUp = (workerId: string, now = Date.now()) => loadOf(workerId).downUntil <= now && healthOf(workerId)?.up !== false;
export const markUp = (workerId: string) => void (loadOf(workerId).downUntil = 0);

const fleet = (env: Env) => env.WORKER_HEALTH.get(env.WORKER_HEALTH.idFromName("fleet"));
const targets = (workers: WorkerEntry[]): HealthTarget[] => workers.map(({ id, url, secret }) => ({ id, url, secret }));

// A connection to this worker failed: out of rotation here at once, and for every isolate
// until the shared prober sees it healthy again.
export function markDown(env: Env, worker: WorkerEntry, waitUntil: (p: Promise<unknown>) => void): void {
  loadOf(worker.id).downUntil = Date.now() + DOWN_FOR_MS;
  waitUntil(fleet(env).reportFailure(targets([worker])[0]!).catch(() => undefined));
}

// Brings this isolate's copy of the shared health view up to date: awaited the first time (so a
// new isolate does not route blind), refreshed in the background after that.
export async function refreshHealth(env: Env, workers: WorkerEntry[], waitUntil: (p: Promise<unknown>) => void): Promise<void> {
  if (workers.length === 0) return;
  if (shared && (shared.asking || Date.now() - shared.at < HEALTH_TTL_MS)) return;
  const current = shared ?? { at: 0, view: {}, asking: false };
  current.asking = true;
  shared = current;
  const asked = fleet(env)
    .view(targets(workers))
    .then((view) => {
      if (shared === current) Object.assign(current, { at: Date.now(), view, asking: false });
    })
    .catch(() => void (current.asking = false));
  if (current.at === 0) await asked;
  else waitUntil(asked);
}

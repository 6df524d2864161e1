// The GPU worker registry: rows of gpu_workers (URL, shared secret, models) plus what this
// isolate knows about each worker's health and load. Rows are cached briefly; health marks
// come from connection failures and from the workers' own /health reports.
import type { Env } from "../env";

export interface WorkerEntry {
  id: string;
  url: string;
  secret: string;
  models: string[];
}

export interface WorkerLoad {
  outstanding: number; // requests this isolate has in flight on the worker
  reported: number; // running + waiting from the worker's last /health
  reportedAt: number;
  downUntil: number; // a failed connection takes a worker out of rotation for a while
}

const ROWS_TTL_MS = 2_000;
const DOWN_FOR_MS = 10_000;
const HEALTH_TTL_MS = 2_000;

let cached: { at: number; rows: WorkerEntry[] } | null = null;
const loads = new Map<string, WorkerLoad>();

export function invalidateWorkerRegistry(): void {
  cached = null;
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
  const rows = results.map((r) => ({ id: r.id, url: r.url.replace(/\/+$/, ""), secret: r.secret, models: JSON.parse(r.models) as string[] }));
  cached = { at: Date.now(), rows };
  return rows;
}

export function loadOf(workerId: string): WorkerLoad {
  let load = loads.get(workerId);
  if (!load) {
    load = { outstanding: 0, reported: 0, reportedAt: 0, downUntil: 0 };
    loads.set(workerId, load);
  }
  return load;
}

export const isUp = (workerId: string, now = Date.now()) => loadOf(workerId).downUntil <= now;
export const markDown = (workerId: string) => void (loadOf(workerId).downUntil = Date.now() + DOWN_FOR_MS);
export const markUp = (workerId: string) => void (loadOf(workerId).downUntil = 0);

// Refreshes a worker's reported load in the background; routing never waits on it.
export function refreshHealth(worker: WorkerEntry, waitUntil: (p: Promise<unknown>) => void): void {
  const load = loadOf(worker.id);
  if (Date.now() - load.reportedAt < HEALTH_TTL_MS) return;
  load.reportedAt = Date.now();
  const probe = fetch(`${worker.url}/health`, { headers: { authorization: `Bearer ${worker.secret}` } })
    .then(async (res) => {
      if (!res.ok) return;
      const health = (await res.json()) as { running?: number; waiting?: number };
      load.reported = (health.running ?? 0) + (health.waiting ?? 0);
    })
    .catch(() => markDown(worker.id));
  waitUntil(probe);
}

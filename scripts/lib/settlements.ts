// Operator views of settlement: the settlement queue's dead letters (served requests whose money
// has not arrived: the ledger refused them for about an hour), and reconciliation of what the GPU
// workers served (their GET /v1/usage records, keyed by the gateway's request id) against the
// usage rows the ledger wrote, so that any request served but never settled is found.
import { openWorkerSecret } from "../../workers/gateway/src/upstream/worker-secret";
import { query, sqlString, type D1Target } from "./local-d1";

export interface DeadSettlement {
  request_id: string;
  account_id: string;
  attempts: number;
  dead_at: number;
  resettled_at: number | null;
  settlement: string;
}

export function deadSettlements(target: D1Target): DeadSettlement[] {
  return query<DeadSettlement>(target, "SELECT request_id, account_id, attempts, dead_at, resettled_at, settlement FROM dead_settlements ORDER BY dead_at, request_id");
}

interface WorkerUsage {
  request_id: string;
  endpoint: string;
  model: string;
  finish_reason: string;
  prompt_tokens: number;
  completion_tokens: number;
  finished_at: number;
}

export interface Unsettled extends WorkerUsage {
  worker: string;
  // Dead-lettered by the settlement queue (its record has the settlement), or nowhere at all.
  dead_lettered: boolean;
}

export interface Reconciliation {
  since: number;
  until: number;
  workers: { id: string; served: number; error?: string }[];
  served: number;
  settled: number;
  unsettled: Unsettled[];
}

const PAGE = 5_000;
const IDS_PER_QUERY = 200;

// Every record a worker has with finished_at >= since, page by page.
async function workerUsage(url: string, secret: string, since: number): Promise<WorkerUsage[]> {
  const out: WorkerUsage[] = [];
  let after = 0;
  for (;;) {
    const res = await fetch(`${url.replace(/\/$/, "")}/v1/usage?since=${since}&after=${after}&limit=${PAGE}`, { headers: { authorization: `Bearer ${secret}` } });
    if (!res.ok) throw new Error(`GET /v1/usage answered ${res.status}`);
    const page = (await res.json()) as { data: (WorkerUsage & { seq: number })[]; next_after: number | null };
    out.push(...page.data);
    if (page.next_after === null) return out;
    after = page.next_after;
  }
}

// A request served at `since` or later and finished more than `graceMs` ago (newer ones may still
// be settling) with no usage row is unsettled. A worker attempt that delivered nothing (aborted
// before its first token) was not served.
export async function reconcile(target: D1Target, { since, graceMs, workerKey }: { since: number; graceMs: number; workerKey: () => string }): Promise<Reconciliation> {
  const until = Date.now() - graceMs;
  const workers = query<{ id: string; url: string; secret: string }>(target, "SELECT id, url, secret FROM gpu_workers WHERE enabled = 1 ORDER BY id");
  const served = new Map<string, WorkerUsage & { worker: string }>();
  const report: Reconciliation["workers"] = [];
  for (const worker of workers) {
    try {
      const records = await workerUsage(worker.url, await openWorkerSecret(worker.secret, workerKey()), since);
      const delivered = records.filter((r) => r.finished_at <= until && (r.completion_tokens > 0 || r.finish_reason !== "abort"));
      for (const r of delivered) served.set(r.request_id, { ...r, worker: worker.id });
      report.push({ id: worker.id, served: delivered.length });
    } catch (err) {
      report.push({ id: worker.id, served: 0, error: (err as Error).message });
    }
  }
  const ids = [...served.keys()];
  const settled = new Set<string>();
  const dead = new Set<string>();
  for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
    const list = ids.slice(i, i + IDS_PER_QUERY).map(sqlString).join(", ");
    for (const r of query<{ request_id: string }>(target, `SELECT request_id FROM usage_records WHERE request_id IN (${list})`)) settled.add(r.request_id);
    for (const r of query<{ request_id: string }>(target, `SELECT request_id FROM dead_settlements WHERE request_id IN (${list}) AND resettled_at IS NULL`)) dead.add(r.request_id);
  }
  const unsettled = [...served.values()]
    .filter((r) => !settled.has(r.request_id))
    .map((r) => ({ ...r, dead_lettered: dead.has(r.request_id) }))
    .sort((a, b) => a.finished_at - b.finished_at);
  return { since, until, workers: report, served: served.size, settled: settled.size, unsettled };
}

export const sinceHoursAgo = (hours: number) => Date.now() - Math.round(hours * 3_600_000);

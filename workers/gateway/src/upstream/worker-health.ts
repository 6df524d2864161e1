// WorkerHealth Durable Object: one per gateway, the fleet's health and reported load as every
// isolate sees it. Isolates ask it for a view (at most once per couple of seconds each); it
// probes each worker's /health at most once per PROBE_INTERVAL_MS however many isolates ask,
// and at once (bounded the same way) when an isolate reports a failed connection.
import { DurableObject } from "cloudflare:workers";

export interface HealthTarget {
  id: string;
  url: string;
  secret: string;
}

export interface WorkerHealthView {
  up: boolean;
  load: number; // running + waiting from the worker's last /health
}

interface Entry extends WorkerHealthView {
  url: string;
  checkedAt: number;
  probing: boolean;
}

const PROBE_INTERVAL_MS = 2_000;
const PROBE_TIMEOUT_MS = 3_000;

// A worker is healthy when /health answers 2xx with status "ok" (or, for an external engine
// such as vLLM, with no status at all). Our worker answers 503 with status "error" once its
// engine failed, and status "draining" while it shuts down.
async function probe(target: HealthTarget): Promise<WorkerHealthView> {
  try {
    const res = await fetch(`${target.url}/health`, {
      headers: { authorization: `Bearer ${target.secret}` },
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    const text = await res.text();
    if (!res.ok) return { up: false, load: 0 };
    if (text.trim() === "") return { up: true, load: 0 };
    const health = JSON.parse(text) as { status?: string; running?: number; waiting?: number };
    const up = health.status === undefined || health.status === "ok";
    return { up, load: (Number(health.running) || 0) + (Number(health.waiting) || 0) };
  } catch {
    return { up: false, load: 0 }; // refused, timed out, or not JSON (an edge error page)
  }
}

export class WorkerHealth extends DurableObject {
  private readonly entries = new Map<string, Entry>();

  // The current view of these workers; stale ones are re-probed in the background (a worker
  // never probed yet counts as up: a connection failure takes it out soon enough).
  view(targets: HealthTarget[]): Record<string, WorkerHealthView> {
    const now = Date.now();
    const out: Record<string, WorkerHealthView> = {};
    for (const target of targets) {
      const entry = this.entryFor(target);
      if (now - entry.checkedAt >= PROBE_INTERVAL_MS) this.refresh(target, entry);
      out[target.id] = { up: entry.up, load: entry.load };
    }
    return out;
  }

  // An isolate could not use this worker: take it out for everyone until a probe says otherwise.
  reportFailure(target: HealthTarget): void {
    const entry = this.entryFor(target);
    entry.up = false;
    this.refresh(target, entry);
  }

  private entryFor(target: HealthTarget): Entry {
    let entry = this.entries.get(target.id);
    if (!entry || entry.url !== target.url) {
      entry = { url: target.url, up: true, load: 0, checkedAt: 0, probing: false };
      this.entries.set(target.id, entry);
    }
    return entry;
  }

  private refresh(target: HealthTarget, entry: Entry): void {
    if (entry.probing || Date.now() - entry.checkedAt < PROBE_INTERVAL_MS / 2) return;
    entry.probing = true;
    entry.checkedAt = Date.now();
    this.ctx.waitUntil(
      probe(target).then((view) => {
        entry.up = view.up;
        entry.load = view.load;
        entry.checkedAt = Date.now();
        entry.probing = false;
      }),
    );
  }
}

// Chooses the GPU worker for a request: healthy, serving the model, least loaded, with
// prefix-cache affinity. Requests of one account that share their first prompt block go to
// the same worker (rendezvous hashing), unless that worker is much busier than the least
// loaded one, so the cache-hit rate with several workers stays close to that of one.
import { isUp, loadOf, reportedLoad, type WorkerEntry } from "./worker-registry";

// How many more requests the affinity worker may carry than the least loaded one.
const AFFINITY_SLACK = 4;

function hash32(text: string): number {
  // FNV-1a: cheap, stable, good enough to spread workers.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const loadScore = (w: WorkerEntry) => loadOf(w.id).outstanding + reportedLoad(w.id);

export function pickWorker(workers: WorkerEntry[], model: string, affinityKey: string, exclude: ReadonlySet<string>): WorkerEntry | null {
  const now = Date.now();
  const candidates = workers.filter((w) => w.models.includes(model) && !exclude.has(w.id) && isUp(w.id, now));
  if (candidates.length === 0) return null;

  const leastLoaded = Math.min(...candidates.map(loadScore));
  let preferred = candidates[0]!;
  let best = -1;
  for (const w of candidates) {
    const score = hash32(`${affinityKey}|${w.id}`);
    if (score > best) {
      best = score;
      preferred = w;
    }
  }
  if (loadScore(preferred) <= leastLoaded + AFFINITY_SLACK) return preferred;
  return candidates.reduce((a, b) => (loadScore(b) < loadScore(a) ? b : a));
}

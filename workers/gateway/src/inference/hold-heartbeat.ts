// While a request runs (queued, streaming), the pipeline tells the account's ledger every
// `intervalMs` that it is alive, and the ledger pushes its hold's lapse `holdMs` further out: a
// stream of any length keeps its money held, and only a request nothing is heard from (its
// gateway gone) lets it lapse. A missed beat is harmless; the next one extends again. Each beat
// takes a fresh stub: a stub of a ledger that restarted stays broken.
import type { AccountLedger } from "../billing/account-ledger";

export function keepHoldAlive(
  ledger: () => DurableObjectStub<AccountLedger>,
  accountId: string,
  requestId: string,
  { intervalMs, holdMs }: { intervalMs: number; holdMs: number },
): { stop(): void } {
  const beat = setInterval(() => {
    ledger()
      .extendHold(accountId, requestId, holdMs)
      .catch((err) => console.error(`request ${requestId}: extending its hold failed`, err));
  }, intervalMs);
  return { stop: () => clearInterval(beat) };
}

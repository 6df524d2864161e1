// What the gateway's own routes call after changing a key or the limits of `accountId` in D1:
// the account's ledger, which holds its live keys (live-keys.ts), reads them again before its
// next answer.
import { ledgerFor } from "../stubs";
import type { Env } from "../env";

export function keysChanged(env: Env, accountId: string): Promise<void> {
  return ledgerFor(env, accountId).keysChanged();
}

// Durable Object stubs by name. The account ledger (billing/) composes modules of auth/ and
// limits/, so those folders reach it through its binding here, never by importing billing/:
// folder dependencies point one way (see the layout in the README).
import type { Env } from "./env";

export function ledgerFor(env: Env, accountId: string) {
  return env.LEDGER.get(env.LEDGER.idFromName(accountId));
}

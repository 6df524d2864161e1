// The live API keys of one account, as the request path checks them: held in memory by the
// account's ledger Durable Object (billing/account-ledger.ts), so that checking a key, admitting
// its request under the account's current limits and holding its money are one call. Read from
// D1 at most KEY_STATE_MAX_AGE_MS before an answer; a key this isolate has seen before is checked
// here on every request, a memory lookup instead of a D1 query.
//
// How a change reaches it:
// - made through the gateway (dashboard revoke, operator limits): the route calls
//   `keysChanged()` (keys-changed.ts) before it answers, so the change holds from the very next
//   request;
// - written to D1 behind the gateway's back (the operator CLI): within KEY_STATE_MAX_AGE_MS,
//   and the CLI waits that long before it returns.
import type { AuthenticatedKey } from "../env";
import { SELECT_LIVE_KEYS, toAuthenticatedKey, type LiveKeyRow } from "./key-rows";
import { KEY_STATE_MAX_AGE_MS } from "./key-state";

type KeyMap = Map<string, AuthenticatedKey>;

export class LiveKeys {
  private keys: KeyMap | null = null;
  private readAt = 0;
  // Bumped by every change: a read started before a change is never kept after it.
  private generation = 0;
  private reading: { generation: number; startedAt: number; keys: Promise<KeyMap> } | null = null;

  // `db`: the D1 binding, looked up at each read.
  constructor(private readonly db: () => D1Database) {}

  // The key with its current limits, or null when it is not a live key of this account. A key
  // missing from the copy in memory is looked for in D1 before it is refused: it may be newer.
  async check(accountId: string, keyId: string): Promise<AuthenticatedKey | null> {
    const now = Date.now();
    if (this.keys && now - this.readAt < KEY_STATE_MAX_AGE_MS) {
      // Past half its age the copy is read again in the background, so that a steady stream of
      // requests never waits for D1.
      if (now - this.readAt > KEY_STATE_MAX_AGE_MS / 2) this.read(accountId, this.readAt + 1).catch(() => undefined);
      const live = this.keys.get(keyId);
      if (live) return live;
    }
    return (await this.read(accountId, now)).get(keyId) ?? null;
  }

  // A key was revoked or limits changed: the next check reads D1 again.
  changed(): void {
    this.generation++;
    this.keys = null;
  }

  // Checks share a read that started no earlier than `notBefore` and after the last change.
  private read(accountId: string, notBefore: number): Promise<KeyMap> {
    const shared = this.reading;
    if (shared && shared.generation === this.generation && shared.startedAt >= notBefore) return shared.keys;
    const generation = this.generation;
    const startedAt = Date.now();
    const keys = readLiveKeys(this.db(), accountId).then((keys) => {
      if (generation === this.generation && startedAt >= this.readAt) {
        this.keys = keys;
        this.readAt = startedAt;
      }
      return keys;
    });
    const reading = { generation, startedAt, keys };
    this.reading = reading;
    const done = () => {
      if (this.reading === reading) this.reading = null;
    };
    keys.then(done, done);
    return keys;
  }
}

async function readLiveKeys(db: D1Database, accountId: string): Promise<KeyMap> {
  const { results } = await db.prepare(`${SELECT_LIVE_KEYS} AND k.account_id = ?`).bind(accountId).all<LiveKeyRow>();
  return new Map(results.map((row) => [row.key_id, toAuthenticatedKey(row)]));
}

// The ledger's one alarm, set for the earliest thing due: a stored hold's expiry or an outbox
// retry. Known before the first call, so a new request never postpones an earlier alarm.
export class LedgerAlarm {
  private at: number | null = null;

  constructor(private readonly storage: DurableObjectStorage) {}

  async load(): Promise<void> {
    this.at = await this.storage.getAlarm();
  }

  ensureBy(at: number): void {
    if (this.at !== null && this.at <= at) return;
    this.at = at;
    void this.storage.setAlarm(at);
  }

  fired(): void {
    this.at = null;
  }

  // After an alarm: the next one for the earliest of `due` (nulls: nothing due), at least a
  // second away.
  scheduleNext(now: number, due: (number | null)[]): void {
    const times = due.filter((t): t is number => t !== null);
    if (times.length > 0) this.ensureBy(Math.max(now + 1000, Math.min(...times)));
  }
}

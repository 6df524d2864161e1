// A Worker invocation may make only so many D1 queries and subrequests (50 on the free plan),
// and a query past the limit fails. Work that could exceed it counts its operations against a
// budget well under the limit, and stops (to continue later) before the budget runs out.
export class OperationBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  get left(): number {
    return this.limit - this.used;
  }

  // Whether `count` more operations fit; they are then counted.
  take(count = 1): boolean {
    if (this.used + count > this.limit) return false;
    this.used += count;
    return true;
  }
}

/**
 * Order ids whose `afterCommit` hook ran, kept in memory by this process. A hook runs only after
 * a successful COMMIT, so an id here is always an order that exists in the database.
 */
export class Receipts {
  private readonly ids = new Set<number>();
  private readonly doubted = new Set<number>();

  add(orderId: number): void {
    this.ids.add(orderId);
  }

  /** The order's COMMIT outcome is unknown (its reply never came): no hook ran, the order may exist. */
  inDoubt(orderId: number): void {
    this.doubted.add(orderId);
  }

  listInDoubt(): number[] {
    return [...this.doubted].sort((a, b) => a - b);
  }

  list(): number[] {
    return [...this.ids].sort((a, b) => a - b);
  }
}

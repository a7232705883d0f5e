/**
 * Order ids whose `afterCommit` hook ran, kept in memory by this process. A hook runs only after
 * a successful COMMIT, so an id here is always an order that exists in the database.
 */
export class Receipts {
  private readonly ids = new Set<number>();

  add(orderId: number): void {
    this.ids.add(orderId);
  }

  list(): number[] {
    return [...this.ids].sort((a, b) => a - b);
  }
}

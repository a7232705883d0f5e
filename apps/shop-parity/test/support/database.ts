import pg from 'pg';

/** Direct SQL against an app's database: the tests check what was persisted, not what the app says. */
export async function sql<T extends Record<string, unknown> = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<T>(text, values);
    return rows;
  } finally {
    await client.end();
  }
}

/** Row counts and an item's stock, for "nothing persisted" assertions. */
export async function snapshot(url: string, itemId: number): Promise<{ orders: number; payments: number; stock: number | undefined }> {
  const [row] = await sql<{ orders: string; payments: string; stock: number | null }>(
    url,
    'SELECT (SELECT count(*) FROM orders) AS orders, (SELECT count(*) FROM payments) AS payments, (SELECT stock FROM items WHERE id = $1) AS stock',
    [itemId],
  );
  return { orders: Number(row?.orders), payments: Number(row?.payments), stock: row?.stock ?? undefined };
}

/** Backends of this database left inside a transaction with nothing running. */
export async function idleInTransaction(url: string): Promise<number> {
  const database = new URL(url).pathname.slice(1);
  const [row] = await sql<{ n: string }>(url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'", [database]);
  return Number(row?.n);
}

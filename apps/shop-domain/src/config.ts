/** What the shop reads from the environment (the database variables are read by `engineFromEnv`). */
export interface ShopConfig {
  /** `PORT`, default 3000. */
  port: number;
  /** `HOST`, default 127.0.0.1 (set 0.0.0.0 inside a container). */
  host: string;
  /** `SHOP_FAULTS=1`: honour the `x-fail-at` header on `POST /orders`. */
  faults: boolean;
  /** `DATABASE_URL`; unset: an embedded PostgreSQL is started. */
  databaseUrl: string | undefined;
}

/** Read and validate the shop's environment; throws with the variable's name on a bad value. */
export function shopConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ShopConfig {
  const rawPort = env.PORT?.trim() || '3000';
  const port = /^[0-9]{1,5}$/.test(rawPort) ? Number(rawPort) : NaN;
  if (!Number.isInteger(port) || port > 65_535) throw new Error(`PORT must be an integer from 0 to 65535, got ${JSON.stringify(env.PORT)}`);
  return {
    port,
    host: env.HOST?.trim() || '127.0.0.1',
    faults: env.SHOP_FAULTS === '1' || env.SHOP_FAULTS === 'true',
    databaseUrl: env.DATABASE_URL?.trim() || undefined,
  };
}

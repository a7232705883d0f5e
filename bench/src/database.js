// The benchmark database: a fresh database on DATABASE_URL's server, or on an embedded
// PostgreSQL started for the run; the shop's migrations; 1,000 items with stock that cannot
// run out during a run (restocked at the start of every round anyway).
import { randomBytes } from 'node:crypto';
import { startEmbeddedPostgres } from '@sessionlocal/session-core/testing';
import { migrate, stopEmbeddedDatabase } from '@sessionlocal/shop-domain';
import pg from 'pg';

export const ITEM_COUNT = 1000;
const STOCK = 1_000_000_000;

/**
 * Open the benchmark database. `close()` drops it and stops the embedded server if one was
 * started; it is idempotent and safe to call from a signal handler.
 */
export async function openBenchDatabase({ log = () => {}, onClose = () => {} } = {}) {
  let embedded;
  let serverUrl = process.env.DATABASE_URL;
  if (serverUrl) {
    log(`database: DATABASE_URL (${redact(serverUrl)})`);
  } else {
    log('database: starting an embedded PostgreSQL');
    embedded = await startEmbeddedPostgres();
    serverUrl = embedded.url;
  }
  const name = `sl_bench_${randomBytes(4).toString('hex')}`;
  const admin = new URL(serverUrl);
  admin.pathname = '/postgres';
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  let closing;
  const close = () =>
    (closing ??= (async () => {
      try {
        await query(admin.toString(), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
      } finally {
        if (embedded) await stopEmbeddedDatabase(embedded, 5000).catch(() => {});
      }
    })());
  onClose(close);
  try {
    await query(admin.toString(), `CREATE DATABASE "${name}"`);
    await migrate(url.toString());
    await query(url.toString(), `INSERT INTO items (name, price_cents, stock) SELECT 'item ' || g, 100 + g % 900, ${STOCK} FROM generate_series(1, ${ITEM_COUNT}) AS g`);
  } catch (error) {
    await close();
    throw error;
  }
  return {
    url: url.toString(),
    embedded: Boolean(embedded),
    /** Empty the order tables and restock, so every round starts from the same state. */
    async reset() {
      await query(url.toString(), `TRUNCATE payments, orders RESTART IDENTITY; UPDATE items SET stock = ${STOCK}`);
      await query(url.toString(), 'VACUUM ANALYZE items');
    },
    close,
  };
}

async function query(url, sql) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql);
  } finally {
    await client.end();
  }
}

function redact(url) {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

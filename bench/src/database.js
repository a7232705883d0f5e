// The benchmark database: a fresh database on DATABASE_URL's server, or on an embedded
// PostgreSQL started for the run; the shop's migrations; 1,000 items with stock that cannot
// run out during a run (restocked at the start of every round anyway); `tenant_items` under a
// row-level-security policy on `app.tenant_id`; and a non-superuser login role the servers
// connect as (superusers bypass row-level security, even FORCEd).
import { randomBytes } from 'node:crypto';
import { startEmbeddedPostgres } from '@sessionlocal/session-core/testing';
import { migrate, stopEmbeddedDatabase } from '@sessionlocal/shop-domain';
import pg from 'pg';

export const ITEM_COUNT = 1000;
/** `tenant_items` row `id` belongs to tenant `tenantOf(id)`; the RLS route asks for it as that tenant. */
export const TENANT_COUNT = 10;
export const tenantOf = (id) => 1 + (id % TENANT_COUNT);
const STOCK = 1_000_000_000;

/** The RLS table: the same columns as `items` plus `tenant_id`, readable only by its tenant. */
const RLS_SETUP_SQL = `
  CREATE TABLE tenant_items (
    id          serial PRIMARY KEY,
    tenant_id   integer NOT NULL,
    name        varchar(200) NOT NULL,
    price_cents integer NOT NULL,
    stock       integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
  );
  INSERT INTO tenant_items (tenant_id, name, price_cents, stock)
    SELECT 1 + g % ${TENANT_COUNT}, 'item ' || g, 100 + g % 900, ${STOCK} FROM generate_series(1, ${ITEM_COUNT}) AS g;
  ALTER TABLE tenant_items ENABLE ROW LEVEL SECURITY;
  ALTER TABLE tenant_items FORCE ROW LEVEL SECURITY;
  -- NULLIF: a placeholder setting emptied by an earlier transaction reads as '' (docs/row-level-security.md)
  CREATE POLICY tenant_isolation ON tenant_items USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::integer);
  ANALYZE tenant_items;`;

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
  // the servers' role: a login without superuser or BYPASSRLS, so the RLS policy applies to it
  const role = `${name}_app`;
  const rolePassword = randomBytes(12).toString('hex');
  const appUrl = new URL(url);
  appUrl.username = role;
  appUrl.password = rolePassword;
  let closing;
  const close = () =>
    (closing ??= (async () => {
      try {
        await query(admin.toString(), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`).catch(() => {});
        await query(admin.toString(), `DROP ROLE IF EXISTS "${role}"`).catch(() => {});
      } finally {
        if (embedded) await stopEmbeddedDatabase(embedded, 5000).catch(() => {});
      }
    })());
  onClose(close);
  try {
    await query(admin.toString(), `CREATE DATABASE "${name}"`);
    await migrate(url.toString());
    await query(url.toString(), `INSERT INTO items (name, price_cents, stock) SELECT 'item ' || g, 100 + g % 900, ${STOCK} FROM generate_series(1, ${ITEM_COUNT}) AS g`);
    await query(url.toString(), RLS_SETUP_SQL);
    await query(admin.toString(), `CREATE ROLE "${role}" LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '${rolePassword}'; GRANT CONNECT, TEMPORARY ON DATABASE "${name}" TO "${role}"`);
    await query(
      url.toString(),
      `GRANT USAGE ON SCHEMA public TO "${role}"; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "${role}"; GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "${role}"`,
    );
  } catch (error) {
    await close();
    throw error;
  }
  return {
    /** What the servers connect with: the non-superuser role (row-level security applies). */
    url: appUrl.toString(),
    /** The owner's URL (migrations, reset). */
    ownerUrl: url.toString(),
    role,
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

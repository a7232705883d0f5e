import pg from 'pg';
import { Umzug, type MigrationParams, type UmzugStorage } from 'umzug';
import * as createItems from './migrations/0001-create-items.js';
import * as createOrdersAndPayments from './migrations/0002-create-orders-and-payments.js';
import * as paymentMatchesOrder from './migrations/0003-payment-matches-order.js';

/** Migrations get the migrating connection; every statement is inside the run's transaction. */
export type MigrationContext = pg.ClientBase;
export type MigrationFn = (params: MigrationParams<MigrationContext>) => Promise<void>;

/** The schema, in order. Add a file under `migrations/` and list it here. */
export const migrations = [
  { name: '0001-create-items', ...createItems },
  { name: '0002-create-orders-and-payments', ...createOrdersAndPayments },
  { name: '0003-payment-matches-order', ...paymentMatchesOrder },
];

const TABLE = 'shop_migrations';
/** Advisory lock key: every process migrating the same database queues on it. */
const LOCK_KEY = 'sessionlocal.shop.migrations';

/** Umzug storage: the names of executed migrations, in a table, on the migrating connection. */
const tableStorage: UmzugStorage<MigrationContext> = {
  async executed({ context: db }) {
    const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${TABLE} ORDER BY name`);
    return rows.map((r) => r.name);
  },
  async logMigration({ name, context: db }) {
    await db.query(`INSERT INTO ${TABLE} (name) VALUES ($1)`, [name]);
  },
  async unlogMigration({ name, context: db }) {
    await db.query(`DELETE FROM ${TABLE} WHERE name = $1`, [name]);
  },
};

export interface MigrateOptions {
  /** Receives one line per applied migration (default: silent). */
  log?: (line: string) => void;
  /** `'down'` reverts every migration (tests). */
  direction?: 'up' | 'down';
}

/**
 * Bring the database at `url` up to date. Idempotent, and safe when several processes start at
 * once: the whole run is one transaction holding `pg_advisory_xact_lock`, so the second process
 * waits, then finds nothing pending. PostgreSQL DDL is transactional: a failed run leaves nothing.
 * Returns the names of the migrations applied by this call.
 */
export async function migrate(url: string, options: MigrateOptions = {}): Promise<string[]> {
  const client = new pg.Client({ connectionString: url, application_name: 'shop-migrate' });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK_KEY]);
    await client.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const log = options.log;
    const umzug = new Umzug<MigrationContext>({
      migrations,
      context: client,
      storage: tableStorage,
      logger: undefined,
    });
    if (log) umzug.on('migrated', ({ name }) => log(`migrated ${name}`));
    if (log) umzug.on('reverted', ({ name }) => log(`reverted ${name}`));
    const done = options.direction === 'down' ? await umzug.down({ to: 0 }) : await umzug.up();
    await client.query('COMMIT');
    return done.map((m) => m.name);
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    await client.end();
  }
}

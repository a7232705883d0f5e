import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded.js';

/** Set by the vitest global setup so every test file of a run shares one embedded server. */
export const SHARED_URL_VARIABLE = 'SESSIONLOCAL_TEST_DATABASE_URL';

let embedded: Promise<EmbeddedDatabase> | undefined;

/**
 * The server tests run against: `DATABASE_URL` when set, else the embedded PostgreSQL started
 * by the global setup, else one started now (once per process, stopped when the process exits).
 */
export async function testDatabaseUrl(): Promise<string> {
  const fromEnv = process.env.DATABASE_URL || process.env[SHARED_URL_VARIABLE];
  if (fromEnv) return fromEnv;
  embedded ??= startEmbeddedPostgres().then((db) => {
    process.once('beforeExit', () => void db.stop());
    return db;
  });
  return (await embedded).url;
}

/** A freshly created database; `drop()` removes it (connections are terminated first). */
export interface TestDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Create a uniquely named database on the test server, so test files run in parallel. */
export async function createTestDatabase(prefix = 'sl_test'): Promise<TestDatabase> {
  const base = new URL(await testDatabaseUrl());
  const name = `${prefix}_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`.toLowerCase();
  const admin = new URL(base);
  admin.pathname = '/postgres';
  await adminQuery(admin.toString(), `CREATE DATABASE "${name}"`);
  const url = new URL(base);
  url.pathname = `/${name}`;
  let dropped = false;
  const drop = async () => {
    if (dropped) return;
    dropped = true;
    await adminQuery(admin.toString(), `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  };
  return { url: url.toString(), name, drop, [Symbol.asyncDispose]: drop };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

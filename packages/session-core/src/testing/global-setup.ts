import { SHARED_URL_VARIABLE } from './database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './embedded.js';

let db: EmbeddedDatabase | undefined;

/**
 * Vitest `globalSetup`: without `DATABASE_URL`, start one embedded PostgreSQL for the whole run
 * and hand its URL to every test file through the environment.
 * @example
 * // vitest.config.ts
 * export default defineConfig({ test: { globalSetup: ['@sessionlocal/session-core/testing/global-setup'] } });
 */
export async function setup(): Promise<void> {
  if (process.env.DATABASE_URL || process.env[SHARED_URL_VARIABLE]) return;
  db = await startEmbeddedPostgres();
  process.env[SHARED_URL_VARIABLE] = db.url;
}

export async function teardown(): Promise<void> {
  await db?.stop();
  db = undefined;
}

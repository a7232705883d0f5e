import { startEmbeddedPostgres, type EmbeddedDatabase } from '@sessionlocal/session-core/testing';

export type { EmbeddedDatabase };

/** A fresh embedded PostgreSQL in a temporary directory (the core helper leaves signal handling to the app). */
export function startEmbeddedDatabase(): Promise<EmbeddedDatabase> {
  return startEmbeddedPostgres();
}

/** Stop it and remove its data directory, also when Ctrl-C already stopped the server. */
export function stopEmbeddedDatabase(db: EmbeddedDatabase, timeoutMs = 10_000): Promise<void> {
  return db.stop({ timeoutMs });
}

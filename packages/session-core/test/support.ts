import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { createEngine, sessionmaker, type Engine, type EngineOptions, type SessionFactory, type SessionOptions } from '../src/index.js';
import { createTestDatabase, type TestDatabase } from '../src/testing/index.js';

export interface Harness {
  db: TestDatabase;
  engine: Engine;
  SessionLocal: SessionFactory;
  /** A plain pg client on the test database, outside any pool (for observing). */
  observer: pg.Client;
  /** Extra engines made by a test; disposed after the file. */
  engines: Engine[];
}

/**
 * One database per test file, an engine on it, and the shared after-each check:
 * no backend of the test database is left `idle in transaction` and no connection is in use.
 */
export function useDatabase(options: { engine?: EngineOptions; session?: SessionOptions } = {}): Harness {
  const harness = { engines: [] as Engine[] } as unknown as Harness;
  beforeAll(async () => {
    harness.db = await createTestDatabase();
    harness.engine = createEngine(harness.db.url, { pool: { max: 5, acquireTimeoutMs: 5000 }, ...options.engine });
    harness.SessionLocal = sessionmaker(harness.engine, options.session);
    harness.observer = new pg.Client({ connectionString: harness.db.url });
    await harness.observer.connect();
  });
  afterEach(async () => {
    await expectClean(harness);
  });
  afterAll(async () => {
    await Promise.all(harness.engines.map((e) => e.dispose({ timeoutMs: 1000 })));
    await harness.engine?.dispose({ timeoutMs: 1000 });
    await harness.observer?.end();
    await harness.db?.drop();
  });
  return harness;
}

/** No backend of the test database idle in transaction; every engine's pool has nothing in use. */
export async function expectClean(harness: Harness): Promise<void> {
  for (const engine of [harness.engine, ...harness.engines]) {
    expect(engine.stats().pool.inUse, 'connections still in use after the test').toBe(0);
  }
  const { rows } = await harness.observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`);
  expect(rows[0].n, 'backends left idle in transaction').toBe(0);
}

/** The backend pid of the connection the current session (or autocommit) runs on. */
export async function backendPid(engine: Engine): Promise<number> {
  const [rows] = (await engine.sequelize.query('SELECT pg_backend_pid() AS pid')) as [Array<{ pid: number }>, unknown];
  return rows[0]!.pid;
}

/** Round trips (ReadyForQuery messages) on the one pooled connection of `SessionLocal`'s engine (`pool.max: 1`) while `fn` runs. */
export async function countRoundTrips(SessionLocal: SessionFactory, fn: () => Promise<unknown>): Promise<number> {
  const probe = SessionLocal();
  await probe.begin();
  const client = probe.heldConnection as unknown as { connection: NodeJS.EventEmitter };
  await probe.close();
  let n = 0;
  const count = () => n++;
  client.connection.on('readyForQuery', count);
  try {
    await fn();
  } finally {
    client.connection.off('readyForQuery', count);
  }
  return n;
}

import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createEngine, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

describe('connections that die at any moment', () => {
  it('backends terminated during connection setup or use never crash the process', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (e: unknown) => uncaught.push(e);
    process.on('uncaughtException', onUncaught);
    const engine = createEngine(h.db.url, { pool: { max: 6, acquireTimeoutMs: 5000 }, applicationName: 'sl-victim' });
    const SessionLocal = sessionmaker(engine);
    const killer = new pg.Client({ connectionString: h.db.url });
    await killer.connect();
    const deadline = Date.now() + 4000;
    let sessions = 0;
    let killed = 0;
    try {
      const kill = (async () => {
        while (Date.now() < deadline) {
          const r = await killer.query("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'sl-victim'");
          killed += r.rows[0].n;
        }
      })();
      // each session dirties its connection, so it is destroyed and the next one connects afresh
      const work = Array.from({ length: 6 }, async () => {
        while (Date.now() < deadline) {
          await SessionLocal.begin(() => engine.sequelize.query('SET application_name = DEFAULT')).catch(() => undefined);
          sessions++;
        }
      });
      await Promise.all([kill, ...work]);
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      process.off('uncaughtException', onUncaught);
      await killer.end();
    }
    expect(uncaught).toEqual([]);
    expect(killed).toBeGreaterThan(0);
    expect(sessions).toBeGreaterThan(10);
    // the engine still works afterwards
    await expect(SessionLocal.begin(() => engine.sequelize.query('SELECT 1'))).resolves.toBeDefined();
    await engine.dispose({ timeoutMs: 1000 });
  });
});

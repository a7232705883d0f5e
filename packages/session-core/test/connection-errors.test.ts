import net from 'node:net';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { createEngine, httpErrorFor, sessionmaker } from '../src/index.js';
import { startFaultProxy } from '../src/testing/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

describe('a database that cannot be reached', () => {
  it.each(['refused', 'silent'] as const)('a session whose connection cannot be opened (%s) fails with an error the adapters answer 503 database_unavailable + Retry-After', async (fault) => {
    const url = new URL(h.db.url);
    let proxy: Awaited<ReturnType<typeof startFaultProxy>> | undefined;
    if (fault === 'refused') {
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      url.port = String((server.address() as net.AddressInfo).port);
      url.hostname = '127.0.0.1';
      await new Promise((resolve) => server.close(resolve));
    } else {
      proxy = await startFaultProxy({ host: url.hostname, port: Number(url.port || 5432) });
      proxy.silent();
      url.hostname = '127.0.0.1';
      url.port = String(proxy.port);
    }
    try {
      const engine = createEngine(url.toString(), { pool: { max: 1, acquireTimeoutMs: 1500 }, connectTimeoutMs: 300 });
      h.engines.push(engine);
      const error = await sessionmaker(engine)
        .begin(() => engine.sequelize.query('SELECT 1'))
        .catch((e: unknown) => e);
      expect(httpErrorFor(error)).toMatchObject({ status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_unavailable' } });
      expect(engine.stats().pool.inUse).toBe(0);
    } finally {
      await proxy?.close();
    }
  });

  it('a refused login is not a 503 (it will not get better by retrying)', async () => {
    const url = new URL(h.db.url);
    url.username = 'no_such_role_sl';
    const engine = createEngine(url.toString(), { pool: { max: 1 } });
    h.engines.push(engine);
    const error = await sessionmaker(engine)
      .begin(() => engine.sequelize.query('SELECT 1'))
      .catch((e: unknown) => e);
    expect(httpErrorFor(error)).toBeUndefined();
  });
});

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

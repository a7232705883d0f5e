import { QueryTypes } from 'sequelize';
import { describe, expect, it } from 'vitest';
import { createEngine, engineFromEnv, sessionmaker } from '../src/index.js';
import { backendPid, useDatabase } from './support.js';

const h = useDatabase();

/** The "replica" here is the primary under another application_name: routing is told apart by backend pids. */
describe('read replicas (replica URL pointed at the primary)', () => {
  it('read-only sessions use the replica pool, read-write sessions and statements outside sessions the primary; stats() reports each pool', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], applicationName: 'sl-replica-test', replicaOptions: { checkIntervalMs: 0 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const readOnly = SessionLocal({ readOnly: true });
    await readOnly.run(() => engine.sequelize.query('SELECT 1 AS one', { type: QueryTypes.SELECT }));
    let stats = engine.stats();
    expect(stats.pools?.replicas[0]).toMatchObject({ inUse: 1, size: 1 });
    expect(stats.pools?.primary).toMatchObject({ inUse: 0 });
    const writer = SessionLocal();
    await writer.begin();
    stats = engine.stats();
    expect(stats.pools?.primary.inUse).toBe(1);
    expect(stats.pool.inUse).toBe(2);
    // autocommit outside any session: the primary (as documented), not the replica pool
    await engine.sequelize.query('SELECT 1', { type: QueryTypes.SELECT });
    expect(engine.stats().pools?.primary.size).toBe(2);
    expect(engine.stats().pools?.replicas[0]?.size).toBe(1);
    await Promise.all([readOnly.close(), writer.close()]);
    expect(engine.stats().pool).toMatchObject({ inUse: 0, size: 3, idle: 3 });
    expect(engine.stats().pools?.replicas[0]).toMatchObject({ url: h.db.url.replace(/:[^:@/]*@/, ':***@'), inUse: 0, idle: 1 });
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'sl-replica-test'");
    expect(rows[0].n).toBe(3);
  });

  it('stats() counts the read-only sessions each replica served; sessions that never query and read-write sessions are not counted', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], replicaOptions: { checkIntervalMs: 0 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    expect(engine.stats().pools?.replicas[0]?.served).toBe(0);
    const reads = 2 + Math.floor(Math.random() * 4);
    for (let i = 0; i < reads; i++) await SessionLocal.begin(() => engine.sequelize.query('SELECT 1', { type: QueryTypes.SELECT }), { readOnly: true });
    await SessionLocal.begin(() => engine.sequelize.query('SELECT 1', { type: QueryTypes.SELECT }));
    await SessionLocal({ readOnly: true }).close();
    expect(engine.stats().pools?.replicas[0]?.served).toBe(reads);
  });

  it('a replica connection is never handed to a read-write session', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], replicaOptions: { checkIntervalMs: 0 }, pool: { max: 2 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const replicaPids = new Set<number>();
    for (let i = 0; i < 4; i++) await SessionLocal.begin(async () => replicaPids.add(await backendPid(engine)), { readOnly: true });
    for (let i = 0; i < 4; i++) {
      const pid = await SessionLocal.begin(() => backendPid(engine));
      expect(replicaPids.has(pid)).toBe(false);
    }
  });

  it('ping({ replicas: true }) checks every replica; a not-in-recovery "replica" counts as up with no lag', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], replicaOptions: { checkIntervalMs: 0 } });
    h.engines.push(engine);
    const report = await engine.ping({ replicas: true });
    expect(report.primaryMs).toBeGreaterThan(0);
    expect(report.replicas).toEqual([expect.objectContaining({ state: 'up', lagMs: 0 })]);
    expect(report.replicas[0]?.latencyMs).toBeGreaterThan(0);
  });

  it('engineFromEnv reads DATABASE_REPLICA_URLS and the DB_REPLICA_* variables; a bad one is a ConfigError without the password', async () => {
    const env = {
      DATABASE_URL: h.db.url,
      DATABASE_REPLICA_URLS: `${h.db.url}, ${h.db.url}`,
      DB_REPLICA_MAX_LAG_MS: '2500',
      DB_REPLICA_FALLBACK: 'error',
      DB_REPLICA_CHECK_INTERVAL_MS: '0',
    };
    const engine = engineFromEnv(env);
    h.engines.push(engine);
    expect(engine.options.replicas).toHaveLength(2);
    expect(engine.options.replicaOptions).toMatchObject({ maxLagMs: 2500, fallback: 'error', checkIntervalMs: 0 });
    expect(engine.stats().pools?.replicas).toHaveLength(2);
    expect(() => engineFromEnv({ ...env, DATABASE_REPLICA_URLS: 'mysql://u:s3cret-pw@h/db' })).toThrow(/DATABASE_REPLICA_URLS\[0\]/);
    try {
      engineFromEnv({ ...env, DATABASE_REPLICA_URLS: 'mysql://u:s3cret-pw@h/db' });
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('s3cret-pw');
    }
    expect(() => engineFromEnv({ ...env, DB_REPLICA_FALLBACK: 'maybe' })).toThrow(/DB_REPLICA_FALLBACK/);
    expect(() => createEngine(h.db.url, { replicaOptions: { maxLagMs: -1 } })).toThrow(/replicaOptions.maxLagMs/);
    expect(() => createEngine(h.db.url, { replicaOptions: { fallback: 'nope' as 'error' } })).toThrow(/replicaOptions.fallback/);
    expect(() => sessionmaker(engine)({ readOnly: true, minLsn: 'x; DROP TABLE' })).toThrow(/minLsn/);
    expect(() => sessionmaker(engine, { readYourWrites: { maxWaitMs: -5 } })).toThrow(/readYourWrites.maxWaitMs/);
  });

  it('dispose closes the replica pools and the health-check connections, also with a check in flight', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], applicationName: 'sl-replica-dispose', replicaOptions: { checkIntervalMs: 20 } });
    const SessionLocal = sessionmaker(engine);
    await SessionLocal.begin(() => engine.sequelize.query('SELECT 1'), { readOnly: true });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await engine.dispose();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'sl-replica-dispose%'");
    expect(rows[0].n).toBe(0);
  });
});

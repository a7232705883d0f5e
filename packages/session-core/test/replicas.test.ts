import { QueryTypes } from 'sequelize';
import { describe, expect, it } from 'vitest';
import { createEngine, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

interface Pools {
  read: { size: number; using: number };
  write: { size: number; using: number };
}

describe('read replicas', () => {
  it('read-only sessions use the replica pool, others the primary, and stats() sums both', async () => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], applicationName: 'sl-replica-test' });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const pools = (engine.sequelize as unknown as { connectionManager: { pool: Pools } }).connectionManager.pool;
    const readOnly = SessionLocal({ readOnly: true });
    await readOnly.run(() => engine.sequelize.query('SELECT 1 AS one', { type: QueryTypes.SELECT }));
    expect(pools.read.using).toBe(1);
    expect(pools.write.using).toBe(0);
    const writer = SessionLocal();
    await writer.begin();
    expect(pools.write.using).toBe(1);
    expect(engine.stats().pool.inUse).toBe(2);
    await Promise.all([readOnly.close(), writer.close()]);
    expect(engine.stats().pool).toMatchObject({ inUse: 0, size: 2, idle: 2 });
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'sl-replica-test'");
    expect(rows[0].n).toBe(2);
  });
});

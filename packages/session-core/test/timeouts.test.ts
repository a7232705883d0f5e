import { describe, expect, it } from 'vitest';
import { PoolTimeoutError, createEngine, sessionmaker } from '../src/index.js';
import { holdOnlyConnection } from '../src/conformance/scenarios.js';
import { useDatabase } from './support.js';

const h = useDatabase();

describe('rule 11: server-enforced timeouts and leak warnings', () => {
  it('statementTimeoutMs cancels a long statement on the server', async () => {
    const engine = createEngine(h.db.url, { statementTimeoutMs: 100 });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const started = Date.now();
    const error = await SessionLocal.begin(() => engine.sequelize.query('SELECT pg_sleep(2)')).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(1500);
    expect((error as { parent?: { code?: string } }).parent?.code).toBe('57014');
  });

  it('idleInTransactionTimeoutMs ends a session that sits idle in its transaction, and the pool recovers', async () => {
    const engine = createEngine(h.db.url, { idleInTransactionTimeoutMs: 100, pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal();
    await session.run(() => engine.sequelize.query('SELECT 1'));
    await new Promise((r) => setTimeout(r, 400));
    const error = await session.run(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    await session.close();
    expect(engine.stats().pool.inUse).toBe(0);
    // the next session gets a working connection
    await expect(SessionLocal.begin(() => engine.sequelize.query('SELECT 1'))).resolves.toBeDefined();
  });

  it('emits `leak` with the opening stack when a session holds its connection too long', async () => {
    const Leaky = sessionmaker(h.engine, { leakWarningMs: 50 });
    const leaks: Array<{ sessionId: number; heldMs: number; stack: string | undefined }> = [];
    Leaky.on('leak', (e) => leaks.push(e));
    const session = Leaky();
    await session.run(() => h.engine.sequelize.query('SELECT 1'));
    await new Promise((r) => setTimeout(r, 150));
    await session.close();
    expect(leaks).toHaveLength(1);
    expect(leaks[0]!.sessionId).toBe(session.id);
    expect(leaks[0]!.heldMs).toBeGreaterThan(45); // timers may fire a hair early against performance.now()
    expect(leaks[0]!.stack).toMatch(/timeouts\.test\.ts/);
  });
});

describe('rule 12: pool acquire timeout', () => {
  it('throws PoolTimeoutError instead of hanging, and the pool works afterwards', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1, acquireTimeoutMs: 200 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const holder = await holdOnlyConnection(SessionLocal);
    const started = Date.now();
    const error = await SessionLocal.begin(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PoolTimeoutError);
    expect((error as PoolTimeoutError).code).toBe('POOL_TIMEOUT');
    expect((error as PoolTimeoutError).statusCode).toBe(503);
    expect(Date.now() - started).toBeLessThan(5000); // 200 ms timeout; generous for a loaded CI machine, far below a hang
    await holder.close();
    await expect(SessionLocal.begin(() => engine.sequelize.query('SELECT 1'))).resolves.toBeDefined();
  });
});

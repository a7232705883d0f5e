import { describe, expect, it } from 'vitest';
import { createEngine, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

const pidAndTimezone = async (engine: ReturnType<typeof createEngine>) => {
  const [rows] = (await engine.sequelize.query("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS wm")) as [Array<{ pid: number; wm: string }>, unknown];
  return rows[0]!;
};

describe('rule 13: clean release', () => {
  it('a connection that ran a session-level SET is destroyed, not handed to the next session', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const first = await SessionLocal.begin(async () => {
      await engine.sequelize.query("SET work_mem = '7MB'");
      return pidAndTimezone(engine);
    });
    expect(first.wm).toBe('7MB');
    const second = await SessionLocal.begin(() => pidAndTimezone(engine));
    expect(second.pid).not.toBe(first.pid);
    expect(second.wm).not.toBe('7MB');
    // SET LOCAL ends with the transaction: the connection is reused
    const third = await SessionLocal.begin(async () => {
      await engine.sequelize.query("SET LOCAL work_mem = '9MB'");
      return pidAndTimezone(engine);
    });
    const fourth = await SessionLocal.begin(() => pidAndTimezone(engine));
    expect(third.wm).toBe('9MB');
    expect(fourth.pid).toBe(third.pid);
    expect(fourth.wm).not.toBe('9MB');
  });

  it('a connection whose backend was terminated is destroyed and the next session gets a fresh one', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal();
    const victim = await session.run(async () => (await pidAndTimezone(engine)).pid);
    await h.observer.query('SELECT pg_terminate_backend($1)', [victim]);
    const error = await session.run(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    await session.close();
    expect(engine.stats().pool.inUse).toBe(0);
    const next = await SessionLocal.begin(() => pidAndTimezone(engine));
    expect(next.pid).not.toBe(victim);
  });

  it('a connection terminated while idle in the pool is not handed out again', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const victim = await SessionLocal.begin(async () => (await pidAndTimezone(engine)).pid);
    await h.observer.query('SELECT pg_terminate_backend($1)', [victim]);
    await new Promise((r) => setTimeout(r, 100));
    const next = await SessionLocal.begin(() => pidAndTimezone(engine));
    expect(next.pid).not.toBe(victim);
  });

  it('after rollback of an aborted transaction the same connection is reused cleanly', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal();
    const pid = await session.run(async () => {
      const p = (await pidAndTimezone(engine)).pid;
      await engine.sequelize.query('SELECT 1/0').catch(() => undefined);
      return p;
    });
    await session.close();
    const next = await SessionLocal.begin(() => pidAndTimezone(engine));
    expect(next.pid).toBe(pid);
  });
});

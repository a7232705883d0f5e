import { describe, expect, it } from 'vitest';
import { sessionmaker, type SessionEvent } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

describe('SessionLocal.on(event)', () => {
  it('emits begin, commit, rollback and close with the session id and durations', async () => {
    const SessionLocal = sessionmaker(h.engine);
    const log: Array<[SessionEvent, Record<string, unknown>]> = [];
    for (const event of ['begin', 'commit', 'rollback', 'close'] as const) {
      SessionLocal.on(event, (payload) => log.push([event, payload as unknown as Record<string, unknown>]));
    }
    const session = SessionLocal();
    await session.run(async () => {
      await h.engine.sequelize.query('SELECT 1');
      await session.commit();
      await h.engine.sequelize.query('SELECT 1');
      await session.rollback();
    });
    await session.close();
    expect(log.map(([e]) => e)).toEqual(['begin', 'commit', 'begin', 'rollback', 'close']);
    for (const [, payload] of log) expect(payload.sessionId).toBe(session.id);
    for (const [e, payload] of log) if (e !== 'close') expect(payload.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('off() removes a listener', async () => {
    const SessionLocal = sessionmaker(h.engine);
    let n = 0;
    const listener = () => n++;
    SessionLocal.on('close', listener);
    await SessionLocal.begin(() => undefined);
    SessionLocal.off('close', listener);
    await SessionLocal.begin(() => undefined);
    expect(n).toBe(1);
  });
});

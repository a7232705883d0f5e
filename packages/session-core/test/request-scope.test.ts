import { describe, expect, it } from 'vitest';
import { openRequestScope, runOutsideSession, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();

describe('RequestScope: the lazy request costs nothing', () => {
  it('a request that never queried ends synchronously: closed, no connection, `close` emitted once', () => {
    const SessionLocal = sessionmaker(h.engine);
    const closed: number[] = [];
    SessionLocal.on('close', ({ sessionId }) => closed.push(sessionId));
    const scope = openRequestScope({ factory: SessionLocal }, {})!;
    expect(scope.endIfUntouched()).toBe(true);
    expect(scope.session.state).toBe('closed');
    expect(closed).toEqual([scope.session.id]);
    expect(h.engine.stats().pool.size).toBe(0);
    // idempotent, and end() answers the same outcome
    expect(scope.endIfUntouched()).toBe(false);
    return expect(scope.end({ status: 200 })).resolves.toEqual({ committed: false });
  });

  it('a request that queried is not ended synchronously, and end() commits it', async () => {
    const SessionLocal = sessionmaker(h.engine);
    const scope = openRequestScope({ factory: SessionLocal }, {})!;
    await scope.run(() => h.engine.sequelize.query('CREATE TEMP TABLE IF NOT EXISTS t (n int) ON COMMIT DROP'));
    expect(scope.endIfUntouched()).toBe(false);
    expect(await scope.end({ status: 200 })).toEqual({ committed: true });
    expect(scope.session.state).toBe('closed');
  });

  it('a request that only registered an afterCommit hook still runs it (the asynchronous path)', async () => {
    const SessionLocal = sessionmaker(h.engine);
    const scope = openRequestScope({ factory: SessionLocal }, {})!;
    let ran = 0;
    scope.session.afterCommit(() => ran++);
    expect(scope.endIfUntouched()).toBe(false);
    expect(await scope.end({ status: 201 })).toEqual({ committed: true });
    expect(ran).toBe(1);
  });

  it('an error reported before the synchronous end is still in the result', async () => {
    const scope = openRequestScope({ factory: sessionmaker(h.engine) }, {})!;
    const failure = new Error('handler failed');
    scope.fail(failure);
    expect(scope.endIfUntouched()).toBe(true);
    expect(await scope.end({ status: 500 })).toEqual({ committed: false, error: failure });
  });

  it('the signal is created only when asked for, and aborts at close when it was', async () => {
    const SessionLocal = sessionmaker(h.engine);
    const quiet = openRequestScope({ factory: SessionLocal }, {})!;
    expect(quiet.aborted).toBe(false);
    quiet.endIfUntouched();
    const watched = openRequestScope({ factory: SessionLocal }, {})!;
    const { signal } = watched.session;
    watched.endIfUntouched();
    expect(signal.aborted).toBe(true);
    expect((signal.reason as { code?: string }).code).toBe('SESSION_CLOSED');
  });

  it('runOutsideSession hides the current session without disabling the storage', async () => {
    const SessionLocal = sessionmaker(h.engine);
    await SessionLocal.begin(async (session) => {
      expect(SessionLocal.currentOrUndefined()).toBe(session);
      await runOutsideSession(SessionLocal, async () => {
        await new Promise((resolve) => setImmediate(resolve));
        expect(SessionLocal.currentOrUndefined()).toBeUndefined();
      });
      expect(SessionLocal.current()).toBe(session);
    });
  });
});

describe('RequestScope: the end is the end', () => {
  it('a statement issued once the request started ending throws SessionClosedError and is never run', async () => {
    const SessionLocal = sessionmaker(h.engine);
    await h.engine.autocommit(() => h.engine.sequelize.query('CREATE TABLE IF NOT EXISTS late_writes (label text)'));
    const scope = openRequestScope({ factory: SessionLocal }, {})!;
    await scope.run(() => h.engine.sequelize.query(`INSERT INTO late_writes VALUES ('in time')`));
    const ending = scope.end({ status: 200 }); // e.g. the first byte of a streamed response
    const late = scope.run(() => h.engine.sequelize.query(`INSERT INTO late_writes VALUES ('too late')`));
    await expect(late).rejects.toMatchObject({ code: 'SESSION_CLOSED' });
    await expect(scope.session.transaction()).rejects.toMatchObject({ code: 'SESSION_CLOSED' });
    expect(await ending).toEqual({ committed: true });
    const [rows] = (await h.engine.autocommit(() => h.engine.sequelize.query('SELECT label FROM late_writes ORDER BY label'))) as [unknown[], unknown];
    expect(rows).toEqual([{ label: 'in time' }]);
  });
});

describe('hooks after the end', () => {
  it('an afterCommit hook queries outside the ended session (autocommit) and sees the committed row', async () => {
    const SessionLocal = sessionmaker(h.engine);
    await h.engine.autocommit(() => h.engine.sequelize.query('CREATE TABLE IF NOT EXISTS hooked (label text)'));
    const scope = openRequestScope({ factory: SessionLocal }, {})!;
    let seen: unknown;
    let current: unknown = 'unset';
    // Express ends the scope from inside the handler's context: the hook must still be able to query
    const result = await scope.run(async () => {
      await h.engine.sequelize.query(`INSERT INTO hooked VALUES ('committed')`);
      scope.session.afterCommit(async () => {
        current = SessionLocal.currentOrUndefined();
        [seen] = await h.engine.sequelize.query('SELECT count(*)::int AS n FROM hooked');
      });
      return scope.end({ status: 201 });
    });
    expect(result).toEqual({ committed: true });
    expect(current).toBeUndefined();
    expect(seen).toEqual([{ n: 1 }]);
  });
});

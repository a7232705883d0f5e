import { describe, expect, it, beforeAll } from 'vitest';
import { CommitError, SessionClosedError, TransactionAbortedError, createEngine, sessionmaker } from '../src/index.js';
import { backendPid, useDatabase } from './support.js';
import { defineModels, type Models } from './models.js';

const h = useDatabase();
let m: Models;
beforeAll(async () => {
  m = await defineModels(h.engine);
  await h.engine.autocommit(() =>
    h.engine.sequelize.query(`
      CREATE TABLE ledger (id serial PRIMARY KEY, amount int NOT NULL);
      CREATE TABLE ledger_ref (id serial PRIMARY KEY, ledger_id int NOT NULL
        REFERENCES ledger(id) DEFERRABLE INITIALLY DEFERRED);`),
  );
});

const count = async (table: string) => {
  const { rows } = await h.observer.query(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0].n as number;
};

describe('rule 1: lazy', () => {
  it('creating a session and never querying touches neither the pool nor the server', async () => {
    const engine = createEngine(h.db.url);
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal();
    expect(session.state).toBe('idle');
    expect(session.inTransaction).toBe(false);
    session.afterCommit(() => {});
    await session.commit();
    await session.close();
    expect(engine.stats().pool.size).toBe(0);
    expect(engine.stats().sessions.opened).toBe(0);
  });

  it('the first query acquires one connection and issues BEGIN', async () => {
    const session = h.SessionLocal();
    const before = h.engine.stats().sessions.opened;
    const [rows] = (await session.run(async () => {
      await h.engine.sequelize.query('SELECT txid_current_if_assigned() IS NULL AS none');
      return h.engine.sequelize.query('SELECT now() = statement_timestamp() AS fresh');
    })) as [Array<{ fresh: boolean }>, unknown];
    // inside a transaction now() is the transaction start, so it differs from a later statement's time
    expect(rows[0]!.fresh).toBe(false);
    expect(session.inTransaction).toBe(true);
    expect(session.state).toBe('active');
    expect(h.engine.stats().sessions.opened).toBe(before + 1);
    await session.close();
  });
});

describe('rule 4: commit', () => {
  it('commits, runs afterCommit hooks in order after COMMIT, and stays usable', async () => {
    const session = h.SessionLocal();
    const order: string[] = [];
    await session.run(async () => {
      await m.Author.create({ name: 'committed' });
      session.afterCommit(async () => {
        order.push(`first:${await count('"Authors"')}`);
      });
      session.afterCommit(() => {
        order.push('second');
      });
      session.afterRollback(() => order.push('never'));
      await session.commit();
      expect(session.inTransaction).toBe(false);
      expect(session.state).toBe('idle');
      await m.Author.create({ name: 'next unit' });
      expect(session.inTransaction).toBe(true);
    });
    await session.close();
    expect(order).toEqual(['first:1', 'second']);
    expect(await count('"Authors"')).toBe(1);
    await m.Author.destroy({ where: {} });
  });

  it('a failing afterCommit hook is reported through `error` and never undoes the commit', async () => {
    const errors: unknown[] = [];
    const listener = (e: { error: unknown }) => errors.push(e.error);
    h.SessionLocal.on('error', listener);
    const ran: string[] = [];
    await h.SessionLocal.begin(async (db) => {
      await m.Author.create({ name: 'stays' });
      db.afterCommit(() => {
        throw new Error('mail server down');
      });
      db.afterCommit(() => ran.push('later hook still runs'));
    });
    h.SessionLocal.off('error', listener);
    expect((errors[0] as Error).message).toBe('mail server down');
    expect(ran).toEqual(['later hook still runs']);
    expect(await count('"Authors"')).toBe(1);
    await m.Author.destroy({ where: {} });
  });

  it('a COMMIT that fails (deferred constraint) throws CommitError, runs afterRollback, never afterCommit', async () => {
    const session = h.SessionLocal();
    const ran: string[] = [];
    const error = await session.run(async () => {
      await h.engine.sequelize.query('INSERT INTO ledger_ref (ledger_id) VALUES (424242)');
      session.afterCommit(() => ran.push('afterCommit'));
      session.afterRollback(() => ran.push('afterRollback'));
      return session.commit().catch((e: unknown) => e);
    });
    expect(error).toBeInstanceOf(CommitError);
    expect((error as CommitError).code).toBe('COMMIT_FAILED');
    expect(((error as CommitError).cause as { code?: string }).code).toBe('23503');
    expect(ran).toEqual(['afterRollback']);
    expect(session.state).toBe('idle');
    await session.close();
    expect(await count('ledger_ref')).toBe(0);
    expect(h.engine.stats().sessions.open).toBe(0);
  });
});

describe('rule 5: rollback', () => {
  it('rolls back, runs afterRollback hooks, releases, and the session is usable again', async () => {
    const session = h.SessionLocal();
    const ran: string[] = [];
    await session.run(async () => {
      await m.Author.create({ name: 'gone' });
      session.afterRollback(() => ran.push('afterRollback'));
      session.afterCommit(() => ran.push('never'));
      await session.rollback();
      expect(h.engine.stats().pool.inUse).toBe(0);
      await m.Author.create({ name: 'kept' });
      await session.commit();
    });
    await session.close();
    expect(ran).toEqual(['afterRollback']);
    expect((await m.Author.findAll()).map((a) => a.get('name'))).toEqual(['kept']);
    await m.Author.destroy({ where: {} });
  });
});

describe('rule 6: close', () => {
  it('rolls back what is open, is idempotent, and any later use throws SessionClosedError', async () => {
    const session = h.SessionLocal();
    await session.run(() => m.Author.create({ name: 'never saved' }));
    await Promise.all([session.close(), session.close()]);
    await session.close();
    expect(session.state).toBe('closed');
    expect(session.signal.aborted).toBe(true);
    expect(await count('"Authors"')).toBe(0);
    expect(() => session.run(() => 1)).toThrow(SessionClosedError);
    await expect(session.transaction()).rejects.toBeInstanceOf(SessionClosedError);
    await expect(session.commit()).rejects.toMatchObject({ code: 'SESSION_CLOSED' });
    expect(() => session.afterCommit(() => {})).toThrow(SessionClosedError);
  });
});

describe('rule 7: a failed statement poisons the transaction until rollback', () => {
  it('later statements fail with an error naming the first failure', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      await m.Author.create({ name: 'dup' });
      const first = await m.Author.create({ name: 'dup' }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(Error);
      expect(session.state).toBe('failed');
      const later = await m.Author.count().catch((e: unknown) => e);
      expect(later).toBeInstanceOf(TransactionAbortedError);
      expect((later as Error).message).toMatch(/earlier statement failed/);
      expect((later as Error).message).toMatch(/23505|unique|Validation/i);
      expect((later as TransactionAbortedError).cause).toBe(first);
      await expect(session.commit()).rejects.toBeInstanceOf(CommitError);
      expect(session.state).toBe('idle');
      expect(await m.Author.count()).toBe(0);
    });
    await session.close();
  });
});

describe('rule 8: beginNested', () => {
  it('rolls back to the savepoint on throw and the outer transaction survives', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const outerPid = await backendPid(h.engine);
      await m.Author.create({ name: 'outer' });
      const error = await session
        .beginNested(async () => {
          expect(await backendPid(h.engine)).toBe(outerPid);
          await m.Author.create({ name: 'inner' });
          await m.Author.create({ name: 'outer' }); // unique violation inside the savepoint
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect(session.state).toBe('active');
      const kept = await session.beginNested(async () => {
        await m.Author.create({ name: 'released' });
        return 'ok';
      });
      expect(kept).toBe('ok');
      await session.commit();
    });
    await session.close();
    expect((await m.Author.findAll({ order: [['name', 'ASC']] })).map((a) => a.get('name'))).toEqual(['outer', 'released']);
    await m.Author.destroy({ where: {} });
  });

  it('nested sequelize.transaction(cb) inside a session is a savepoint on the same backend', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const pid = await backendPid(h.engine);
      await h.engine.sequelize
        .transaction(async () => {
          expect(await backendPid(h.engine)).toBe(pid);
          await m.Author.create({ name: 'inner' });
          throw new Error('undo inner');
        })
        .catch(() => undefined);
      await h.engine.sequelize.transaction(async () => {
        await m.Author.create({ name: 'inner kept' });
      });
      expect(h.engine.stats().pool.inUse).toBe(1);
      expect((await m.Author.findAll()).map((a) => a.get('name'))).toEqual(['inner kept']);
    });
    await session.rollback();
    await session.close();
    expect(await m.Author.count()).toBe(0);
  });
});

describe('SessionLocal.begin', () => {
  it('commits on success, rolls back on throw, closes always', async () => {
    let captured: import('../src/index.js').Session | undefined;
    await expect(
      h.SessionLocal.begin(async (db) => {
        captured = db;
        await m.Author.create({ name: 'rolled back' });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(captured?.state).toBe('closed');
    expect(await m.Author.count()).toBe(0);
    const id = await h.SessionLocal.begin(async () => (await m.Author.create({ name: 'saved' })).get('id'));
    expect(await m.Author.findByPk(id as number)).not.toBeNull();
    await m.Author.destroy({ where: {} });
  });
});

import { AsyncLocalStorage } from 'node:async_hooks';
import { QueryTypes, Sequelize, type Transaction } from 'sequelize';
import { describe, expect, it } from 'vitest';
import { CommitError, NestedTransactionError, SessionClosedError, TransactionEndedError, createEngine, sessionmaker } from '../src/index.js';
import { defineModels, type Models } from './models.js';
import { backendPid, useDatabase } from './support.js';

// Regression tests for the session-level behaviours of the hostile-handler and Sequelize-surface
// issues: each failed on the state before the explicit lifecycle (see docs/semantics.md).

const h = useDatabase();
let m: Models;

const count = async (name: string) => {
  const { rows } = await h.observer.query('SELECT count(*)::int AS n FROM "Authors" WHERE name = $1', [name]);
  return rows[0].n as number;
};

describe('the transaction exists from the session start (rule 3, Sequelize surface)', () => {
  it('an afterCreate hook on the first statement sees options.transaction and its afterCommit runs only after COMMIT', async () => {
    m ??= await defineModels(h.engine);
    const seen: string[] = [];
    const hook = (_instance: unknown, options: { transaction?: Transaction | null }) => {
      options.transaction?.afterCommit(() => void seen.push('after-commit'));
      seen.push(options.transaction ? 'hook-with-transaction' : 'hook-without-transaction');
    };
    m.Author.addHook('afterCreate', 'probe', hook);
    try {
      await h.SessionLocal.begin(() => m.Author.create({ name: 'hooked' }));
      expect(seen).toEqual(['hook-with-transaction', 'after-commit']);
      seen.length = 0;
      await h.SessionLocal.begin(async () => {
        await m.Author.create({ name: 'hooked-rolled-back' });
        throw new Error('undo');
      }).catch(() => undefined);
      expect(seen).toEqual(['hook-with-transaction']);
      expect(await count('hooked-rolled-back')).toBe(0);
    } finally {
      m.Author.removeHook('afterCreate', 'probe');
    }
  });
});

describe('only errors that aborted the server transaction fail the session (rule 7)', () => {
  it('a missing replacement, an EmptyResultError and a trapped findOrCreate conflict leave the session usable and committable', async () => {
    m ??= await defineModels(h.engine);
    await h.engine.autocommit(() => m.Author.create({ name: 'existing' }));
    await h.SessionLocal.begin(async (db) => {
      await m.Author.create({ name: 'kept-1' });
      await expect(h.engine.sequelize.query('SELECT :missing AS x', { replacements: {} })).rejects.toThrow(/missing|replacement/i);
      await expect(m.Author.findOne({ where: { name: 'nobody' }, rejectOnEmpty: true })).rejects.toThrow();
      const [found, created] = await m.Author.findOrCreate({ where: { name: 'existing' } });
      expect(created).toBe(false);
      expect(found.get('name')).toBe('existing');
      await m.Author.create({ name: 'kept-2' });
      expect(db.state).toBe('active');
    });
    expect(await count('kept-1')).toBe(1);
    expect(await count('kept-2')).toBe(1);
  });

  it('a statement that reached the server and aborted the transaction still fails the session', async () => {
    m ??= await defineModels(h.engine);
    const session = h.SessionLocal();
    await session.run(async () => {
      await expect(h.engine.sequelize.query('SELECT 1/0')).rejects.toThrow(/division by zero/);
      expect(session.state).toBe('failed');
    });
    await expect(session.commit()).rejects.toBeInstanceOf(CommitError);
    await session.close();
  });
});

describe('the session owns its transaction (Sequelize surface)', () => {
  it('transaction.commit() on the session transaction commits the session; later statements begin again on its own connection', async () => {
    m ??= await defineModels(h.engine);
    const session = h.SessionLocal();
    await session.run(async () => {
      const pid = await backendPid(h.engine);
      await m.Author.create({ name: 'committed-by-hand' });
      const tx = await session.transaction();
      await tx.commit();
      expect(session.inTransaction).toBe(false);
      expect(await count('committed-by-hand')).toBe(1);
      await m.Author.create({ name: 'second-unit' });
      expect(session.inTransaction).toBe(true);
      expect(await backendPid(h.engine)).not.toBeUndefined();
      // the captured transaction ended: it is never run in another transaction
      await expect(h.engine.sequelize.query('SELECT 1', { transaction: tx })).rejects.toBeInstanceOf(TransactionEndedError);
      expect(typeof pid).toBe('number');
    });
    await session.close();
    expect(await count('second-unit')).toBe(0);
  });

  it('a Transaction captured in one session and used after it closed throws, never runs inside another session', async () => {
    m ??= await defineModels(h.engine);
    let captured: Transaction | undefined;
    await h.SessionLocal.begin(async (db) => {
      captured = await db.transaction();
    });
    await h.SessionLocal.begin(async () => {
      await m.Author.create({ name: 'victim-session' });
      await expect(m.Author.create({ name: 'stray' }, { transaction: captured })).rejects.toBeInstanceOf(TransactionEndedError);
      throw new Error('roll back the victim');
    }).catch(() => undefined);
    expect(await count('stray')).toBe(0);
    expect(await count('victim-session')).toBe(0);
  });

  it('afterCommit on an unmanaged nested transaction committed by hand waits for the real COMMIT', async () => {
    m ??= await defineModels(h.engine);
    const fired: string[] = [];
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      t.afterCommit(() => void fired.push('nested'));
      await m.Author.create({ name: 'in-savepoint' }, { transaction: t });
      await t.commit();
      expect(fired).toEqual([]);
      throw new Error('the session rolls back');
    }).catch(() => undefined);
    expect(fired).toEqual([]);
    expect(await count('in-savepoint')).toBe(0);
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      t.afterCommit(() => void fired.push('nested'));
      await t.commit();
      expect(fired).toEqual([]);
    });
    expect(fired).toEqual(['nested']);
  });
});

describe('nested transactions a savepoint cannot give are refused (rules 3, 8)', () => {
  it('Promise.all of two nested transaction(cb) refuses the second up front; the first unit keeps its rows', async () => {
    m ??= await defineModels(h.engine);
    const results = await h.SessionLocal.begin(async () =>
      Promise.allSettled([
        h.engine.sequelize.transaction(async () => {
          await m.Author.create({ name: 'healthy-unit' });
        }),
        h.engine.sequelize.transaction(async () => {
          await m.Author.create({ name: 'sibling-unit' });
        }),
      ]),
    );
    expect(results[0]!.status).toBe('fulfilled');
    expect(results[1]!.status).toBe('rejected');
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(NestedTransactionError);
    expect(String((results[1] as PromiseRejectedResult).reason.message)).toMatch(/one after another/);
    expect(await count('healthy-unit')).toBe(1);
    expect(await count('sibling-unit')).toBe(0);
  });

  it('sequential nested units, and units nested inside units, are fine', async () => {
    m ??= await defineModels(h.engine);
    await h.SessionLocal.begin(async () => {
      for (const name of ['seq-1', 'seq-2']) {
        await h.engine.sequelize.transaction(async () => {
          await m.Author.create({ name });
          await h.engine.sequelize.transaction(() => m.Author.create({ name: `${name}-inner` }));
        });
      }
    });
    expect(await count('seq-2-inner')).toBe(1);
    // the inner unit of a later round rolls back to its own savepoint, not to a sibling's of the same name
    await h.SessionLocal.begin(async () => {
      for (const name of ['rb-1', 'rb-2']) {
        await h.engine.sequelize.transaction(async () => {
          await m.Author.create({ name });
          await h.engine.sequelize
            .transaction(async () => {
              await m.Author.create({ name: `${name}-inner` });
              throw new Error('inner fails');
            })
            .catch(() => undefined);
        });
      }
    });
    expect([await count('rb-1'), await count('rb-2'), await count('rb-1-inner'), await count('rb-2-inner')]).toEqual([1, 1, 0, 0]);
  });

  it('an isolation level or readOnly the session does not have is refused, naming the option', async () => {
    await h.SessionLocal.begin(async () => {
      await expect(h.engine.sequelize.transaction({ isolationLevel: 'SERIALIZABLE' as never }, async () => 1)).rejects.toThrow(/isolationLevel/);
      await expect(h.engine.sequelize.transaction({ readOnly: true } as never, async () => 1)).rejects.toBeInstanceOf(NestedTransactionError);
    });
    const Serial = sessionmaker(h.engine, { isolationLevel: 'SERIALIZABLE' });
    await expect(Serial.begin(() => h.engine.sequelize.transaction({ isolationLevel: 'SERIALIZABLE' as never }, async () => 'same level'))).resolves.toBe('same level');
  });
});

describe('counters, events and context after the end (rules 4, 6)', () => {
  it('a failed COMMIT counts as rolled back and emits rollback once', async () => {
    const engine = createEngine(h.db.url);
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    await engine.autocommit(() => engine.sequelize.query('CREATE TABLE IF NOT EXISTS deferred_u (k int, CONSTRAINT deferred_u_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)'));
    const rollbacks: unknown[] = [];
    SessionLocal.on('rollback', (e) => rollbacks.push(e));
    const error = await SessionLocal.begin(() => engine.sequelize.query('INSERT INTO deferred_u VALUES (1), (1)')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommitError);
    expect(engine.stats().sessions).toMatchObject({ committed: 0, rolledBack: 1, open: 0 });
    expect(rollbacks).toHaveLength(1);
  });

  it('after a unit ended, currentOrUndefined() in a timer it scheduled is undefined and its statements throw SessionClosedError', async () => {
    const { later } = await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.query('SELECT 1');
      const later = new Promise<[unknown, unknown]>((done) =>
        setTimeout(async () => {
          const current = h.SessionLocal.currentOrUndefined();
          const query = await h.engine.sequelize.query('SELECT 1', { type: QueryTypes.SELECT }).catch((e: unknown) => e);
          done([current, query]);
        }, 50),
      );
      return { later };
    });
    const [current, query] = await later;
    expect(current).toBeUndefined();
    expect(query).toBeInstanceOf(SessionClosedError);
  });
});

describe('two instances never see each other (rule 3)', () => {
  it('a global Sequelize.useCLS namespace of another instance never captures the engine statements outside a session', async () => {
    // a minimal CLS namespace (what cls-hooked provides), used the way legacy apps use it
    const storage = new AsyncLocalStorage<Map<string, unknown>>();
    const namespace = {
      get: (key: string) => storage.getStore()?.get(key),
      set: (key: string, value: unknown) => storage.getStore()?.set(key, value),
      run: (fn: (ctx: unknown) => unknown) => storage.run(new Map(storage.getStore()), () => fn(storage.getStore())),
      bind: <F>(fn: F) => fn,
    };
    const previous = (Sequelize as unknown as { _cls?: unknown })._cls;
    Sequelize.useCLS(namespace);
    const legacy = new Sequelize(h.db.url, { logging: false });
    try {
      await legacy.transaction(async () => {
        const legacyPid = ((await legacy.query('SELECT pg_backend_pid() AS pid', { type: QueryTypes.SELECT })) as Array<{ pid: number }>)[0]!.pid;
        const enginePid = await backendPid(h.engine);
        expect(enginePid).not.toBe(legacyPid);
      });
    } finally {
      (Sequelize as unknown as { _cls?: unknown })._cls = previous;
      await legacy.close();
    }
  });
});

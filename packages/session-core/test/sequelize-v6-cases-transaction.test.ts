/*
 * Sequelize v6 transaction cases inside sessions: transaction.test.js, sequelize.transaction.test.js,
 * sequelize.test.js (describe 'transaction'), sequelize/deferrable.test.js, sequelize/truncate.test.js,
 * pool.test.js and replication.test.js. Summary table and skip list: sequelize-v6-cases.test.ts.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DataTypes, Deferrable, ForeignKeyConstraintError, Transaction, UniqueConstraintError, type Model, type ModelStatic } from 'sequelize';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NestedTransactionError, TransactionEndedError } from '../src/errors.js';
import { CommitError, CommitOutcomeUnknownError, PoolTimeoutError, SessionLocalError, createEngine, sessionmaker, type Session } from '../src/index.js';
import { useDatabase } from './support.js';

// biome-ignore lint/suspicious/noExplicitAny: the ported cases' models are untyped, as upstream's
type AnyModel = ModelStatic<Model<any, any>>;

const h = useDatabase({ engine: { pool: { max: 6, acquireTimeoutMs: 5000 } } });

type Cls = { get(key: string): unknown };
/** Transaction fields Sequelize's typings leave out. */
type Tx = Transaction & { id: string; finished?: string; options: Record<string, unknown> };

let User: AnyModel;
let Dot: AnyModel;
let Task: AnyModel;
let Unique: AnyModel;

beforeAll(async () => {
  const { sequelize } = h.engine;
  User = sequelize.define('User', { username: DataTypes.STRING, awesome: DataTypes.BOOLEAN }, { tableName: 'Person' });
  Task = sequelize.define('Task', { title: DataTypes.STRING, active: DataTypes.BOOLEAN });
  User.belongsToMany(Task, { through: 'UserTasks' });
  Task.belongsToMany(User, { through: 'UserTasks' });
  Dot = sequelize.define('dots', { color: DataTypes.STRING });
  Unique = sequelize.define('Model', { name: { type: DataTypes.STRING, unique: true } }, { timestamps: false });
  await h.engine.autocommit(() => sequelize.sync({ force: true }));
});

beforeEach(async () => {
  await h.engine.autocommit(() => h.engine.sequelize.query('TRUNCATE "Person", "Tasks", "UserTasks", "dots", "Models" RESTART IDENTITY CASCADE'));
});

const gate = () => {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
};

/** Wait until some backend of the test database waits on a lock (a statement is blocked). */
async function blockedOnLock(): Promise<void> {
  for (;;) {
    const { rows } = await h.observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`);
    if (rows[0].n > 0) return;
    await delay(10);
  }
}

/** Whether the engine's pool still holds `connection` (idle or in use). */
function pooled(connection: unknown): boolean {
  const pool = (h.engine.sequelize as unknown as { connectionManager: { pool: { _availableObjects: Array<{ resource: unknown }>; _inUseObjects: Array<{ resource: unknown }> } } }).connectionManager
    .pool;
  return [...pool._availableObjects, ...pool._inUseObjects].some((wrapped) => wrapped.resource === connection);
}

const committedUsers = async () => (await h.observer.query('SELECT username FROM "Person" ORDER BY id')).rows.map((r) => r.username as string);

describe('transaction.test.js > Transaction > constructor', () => {
  it('stores options', async () => {
    await h.SessionLocal.begin(
      async (session) => {
        const t = await session.transaction();
        expect((t as Tx).options).toBeInstanceOf(Object);
        expect((t as Tx).options).toMatchObject({ isolationLevel: 'REPEATABLE READ', readOnly: false });
      },
      { isolationLevel: 'REPEATABLE READ' },
    );
  });

  it('generates an identifier', async () => {
    const session = h.SessionLocal();
    const ids = await session.run(async () => {
      const t = await session.transaction();
      expect((t as Tx).id).toBeTruthy();
      expect(session.heldConnection?.uuid).toBe((t as Tx).id);
      await session.commit();
      const next = await session.transaction();
      return [(t as Tx).id, (next as Tx).id];
    });
    await session.close();
    expect(ids[1]).toBeTruthy();
    expect(ids[1]).not.toBe(ids[0]);
  });
});

describe('transaction.test.js > Transaction > autoCallback', () => {
  it('supports automatically committing', async () => {
    // DIFFERENCE: inside a session the unit is a SAVEPOINT, released when the callback resolves;
    // its work is committed by the session's COMMIT
    await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.transaction(async () => {
        await User.create({ username: 'inner' });
      });
      expect(await committedUsers()).toEqual([]);
    });
    expect(await committedUsers()).toEqual(['inner']);
  });

  it('supports automatically rolling back with a thrown error', async () => {
    let t!: Transaction;
    await h.SessionLocal.begin(async () => {
      await User.create({ username: 'outer' });
      await expect(
        h.engine.sequelize.transaction((transaction) => {
          t = transaction;
          throw new Error('Yolo');
        }),
      ).rejects.toThrow('Yolo');
      expect((t as Tx).finished).toBe('rollback');
    });
    expect(await committedUsers()).toEqual(['outer']);
  });

  it('supports automatically rolling back with a rejection', async () => {
    let t!: Transaction;
    await h.SessionLocal.begin(async () => {
      await User.create({ username: 'outer' });
      await expect(
        h.engine.sequelize.transaction(async (transaction) => {
          t = transaction;
          await User.create({ username: 'inner' });
          throw new Error('Swag');
        }),
      ).rejects.toThrow('Swag');
      expect((t as Tx).finished).toBe('rollback');
      expect(await User.count()).toBe(1);
    });
    expect(await committedUsers()).toEqual(['outer']);
  });

  it('supports running hooks when a transaction is committed', async () => {
    // DIFFERENCE: a unit's afterCommit runs after the session's real COMMIT, not at RELEASE SAVEPOINT
    const calls: unknown[] = [];
    let transaction!: Transaction;
    await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.transaction((t) => {
        transaction = t;
        t.afterCommit((arg) => {
          calls.push(arg);
        });
        return h.engine.sequelize.query('SELECT 1+1', { transaction: t, type: 'SELECT' as never });
      });
      expect(calls).toEqual([]);
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toBe(transaction);
  });

  it('supports running hooks when a transaction is committed (two levels: the hook waits for every enclosing unit)', async () => {
    const calls: string[] = [];
    await h.SessionLocal.begin(async () => {
      await expect(
        h.engine.sequelize.transaction(async () => {
          await h.engine.sequelize.transaction(async (inner) => {
            inner.afterCommit(() => {
              calls.push('dropped with the outer unit');
            });
          });
          throw new Error('outer unit rolls back');
        }),
      ).rejects.toThrow('outer unit rolls back');
      await h.engine.sequelize.transaction(async () => {
        await h.engine.sequelize.transaction(async (inner) => {
          inner.afterCommit(() => {
            calls.push('kept');
          });
        });
      });
      expect(calls).toEqual([]);
    });
    expect(calls).toEqual(['kept']);
  });

  it('does not run hooks when a transaction is rolled back', async () => {
    const calls: unknown[] = [];
    await h.SessionLocal.begin(async () => {
      await expect(
        h.engine.sequelize.transaction(async (t) => {
          t.afterCommit(() => {
            calls.push('hook');
          });
          throw new Error('Rollback');
        }),
      ).rejects.toThrow('Rollback');
    });
    expect(calls).toEqual([]);
  });

  it('does not try to rollback a transaction that failed upon committing with SERIALIZABLE isolation level (#3689)', async () => {
    const colors = ['red', 'green', 'green', 'red', 'green', 'red', 'green', 'green', 'green', 'red', 'red', 'red', 'green', 'red', 'red', 'red', 'green', 'red'];
    await h.SessionLocal.begin(() => Dot.bulkCreate(colors.map((color) => ({ color }))));
    const firstUpdated = gate();
    const secondDone = gate();
    let firstNearCommit = false;
    let secondNearCommit = false;
    const first = h.SessionLocal.begin(
      async () => {
        await Dot.update({ color: 'red' }, { where: { color: 'green' } });
        firstUpdated.open();
        await secondDone.opened;
        firstNearCommit = true;
      },
      { isolationLevel: 'SERIALIZABLE' },
    );
    const second = (async () => {
      await firstUpdated.opened;
      try {
        await h.SessionLocal.begin(
          async () => {
            await Dot.update({ color: 'green' }, { where: { color: 'red' } });
            expect(firstNearCommit).toBe(false);
            secondNearCommit = true;
          },
          { isolationLevel: 'SERIALIZABLE' },
        );
      } finally {
        secondDone.open();
      }
    })();
    const [a, b] = await Promise.allSettled([first, second]);
    expect(b.status).toBe('fulfilled');
    expect(a.status).toBe('rejected');
    // the COMMIT failed: the session says so (CommitError) and keeps the server's error as cause
    const error = (a as PromiseRejectedResult).reason;
    expect(error).toBeInstanceOf(CommitError);
    expect(String(error.message)).toMatch(/could not serialize access due to read\/write dependencies among transactions/);
    expect(firstNearCommit).toBe(true);
    expect(secondNearCommit).toBe(true);
    expect(await Dot.count({ where: { color: 'red' } })).toBe(0);
    expect(await Dot.count({ where: { color: 'green' } })).toBe(colors.length);
  });
});

describe('transaction.test.js > Transaction', () => {
  it('does not allow queries after commit (the session transaction)', async () => {
    // DIFFERENCE: the session's transaction of an ended cycle is refused with TransactionEndedError
    // (Sequelize: "commit has been called on this transaction"); the session itself stays usable
    const session = h.SessionLocal();
    await session.run(async () => {
      const t = await session.transaction();
      await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
      await t.commit();
      await expect(h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })).rejects.toBeInstanceOf(TransactionEndedError);
      await h.engine.sequelize.query('SELECT 1+1', { raw: true });
    });
    await session.close();
  });

  it('does not allow queries after commit (a savepoint)', async () => {
    await h.SessionLocal.begin(async () => {
      await User.create({ username: 'outer' });
      const t = await h.engine.sequelize.transaction();
      await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
      await t.commit();
      const rejected = await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true }).then(
        () => undefined,
        (error: unknown) => error as Error & { sql?: string },
      );
      expect(rejected?.message).toMatch(/commit has been called on this transaction\([^)]+\), you can no longer use it\. \(The rejected query is attached as the 'sql' property of this error\)/);
      expect(rejected?.sql).toBe('SELECT 1+1');
      // Sequelize refused it before sending: the session is not failed
      await User.create({ username: 'after' });
    });
    expect(await committedUsers()).toEqual(['outer', 'after']);
  });

  it('does not allow queries immediately after commit call', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const t = await session.transaction();
      await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
      const [commit, query] = await Promise.allSettled([t.commit(), h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })]);
      expect(commit.status).toBe('fulfilled');
      expect(query.status).toBe('rejected');
      expect((query as PromiseRejectedResult).reason).toBeInstanceOf(SessionLocalError);
    });
    await session.close();
  });

  for (const verb of ['commit', 'rollback'] as const) {
    it(`does not allow queries immediately after ${verb} call (a savepoint)`, async () => {
      await h.SessionLocal.begin(async (session) => {
        const t = await h.engine.sequelize.transaction();
        await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
        const [end, query] = await Promise.allSettled([t[verb](), h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })]);
        expect(end.status).toBe('fulfilled');
        expect(query.status).toBe('rejected');
        const error = (query as PromiseRejectedResult).reason as Error & { sql?: string };
        expect(error.message).toMatch(new RegExp(`${verb} has been called on this transaction\\([^)]+\\), you can no longer use it`));
        expect(error.sql).toBe('SELECT 1+1');
        expect(session.state).toBe('active');
      });
    });
  }

  it('does not allow queries after rollback', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const t = await session.transaction();
      await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
      await t.rollback();
      await expect(h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })).rejects.toBeInstanceOf(TransactionEndedError);
    });
    await session.close();
  });

  it('does not allow queries after rollback (a savepoint)', async () => {
    await h.SessionLocal.begin(async (session) => {
      const t = await h.engine.sequelize.transaction();
      await h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true });
      await t.rollback();
      await expect(h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })).rejects.toThrow(/rollback has been called on this transaction/);
      expect(session.state).toBe('active');
    });
  });

  it('should not rollback if connection was not acquired', async () => {
    // DIFFERENCE: the session's transaction exists before any connection; rolling it back then is
    // a no-op of the lazy session (Sequelize: "never started"), and the pool is never touched
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const Local = sessionmaker(engine);
    const session = Local();
    await session.run(async () => {
      const t = (engine.sequelize.constructor as unknown as { _cls: Cls })._cls.get('transaction') as Transaction;
      expect(t).toBeInstanceOf(Transaction);
      await expect(t.rollback()).resolves.toBeUndefined();
    });
    expect(session.state).toBe('idle');
    expect(engine.stats().pool.size).toBe(0);
    await session.close();
  });

  it('does not allow queries immediately after rollback call', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const t = await session.transaction();
      const [rollback, query] = await Promise.allSettled([t.rollback(), h.engine.sequelize.query('SELECT 1+1', { transaction: t, raw: true })]);
      expect(rollback.status).toBe('fulfilled');
      expect(query.status).toBe('rejected');
      expect((query as PromiseRejectedResult).reason).toBeInstanceOf(SessionLocalError);
    });
    await session.close();
  });

  // DIVERGENCE (this and the three "after" cases below): `commit()`/`rollback()` of the session's
  // transaction always delegate to `session.commit()`/`rollback()` (Session.sequelizeTransaction,
  // src/session.ts), even on a Transaction of an earlier, ended cycle. Sequelize refuses to end a
  // finished transaction; here the stale object silently ends the session's *current* cycle
  // (commits or rolls back work it never saw) or is a no-op. Also endCycle sets `finished ??= 'commit'`
  // after a rollback too. Fix: in sequelizeTransaction's delegates, `if (tx.finished) throw new
  // Error(\`Transaction cannot be committed because it has been finished with state: ${tx.finished}\`)`
  // (Sequelize's messages), and have endCycle record the real outcome ('commit' | 'rollback').
  it('does not allow commits after commit (the session transaction)', async () => {
    const session = h.SessionLocal();
    try {
      await session.run(async () => {
        await User.create({ username: 'first' });
        const t = await session.transaction();
        await t.commit();
        await User.create({ username: 'second cycle' });
        await expect(t.commit()).rejects.toThrow('Transaction cannot be committed because it has been finished with state: commit');
        await session.rollback();
      });
    } finally {
      await session.close();
    }
    expect(await committedUsers()).toEqual(['first']);
  });

  it('does not allow commits after commit (a savepoint)', async () => {
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      await t.commit();
      await expect(t.commit()).rejects.toThrow('Transaction cannot be committed because it has been finished with state: commit');
    });
  });

  it('should run hooks if a non-auto callback transaction is committed (a savepoint)', async () => {
    // DIFFERENCE: the savepoint's hook waits for the session's real COMMIT
    const calls: unknown[] = [];
    let savepoint!: Transaction;
    await h.SessionLocal.begin(async () => {
      savepoint = await h.engine.sequelize.transaction();
      savepoint.afterCommit((arg) => {
        calls.push(arg);
      });
      await savepoint.commit();
      expect(calls).toEqual([]);
    });
    expect(calls).toHaveLength(1);
    expect(calls[0]).toBe(savepoint);
  });

  it('should run hooks if a non-auto callback transaction is committed (the session transaction)', async () => {
    const calls: unknown[] = [];
    const session = h.SessionLocal();
    let t!: Transaction;
    await session.run(async () => {
      await User.create({ username: 'x' });
      t = await session.transaction();
      t.afterCommit((arg) => {
        calls.push(arg);
      });
      await t.commit();
    });
    expect(session.inTransaction).toBe(false);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toBe(t);
    await session.close();
    expect(await committedUsers()).toEqual(['x']);
  });

  it('should not run hooks if a non-auto callback transaction is rolled back', async () => {
    const calls: unknown[] = [];
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      t.afterCommit(() => {
        calls.push('hook');
      });
      await t.rollback();
    });
    expect(calls).toEqual([]);
  });

  it('should not run hooks if a non-auto callback transaction is committed but the session rolls back', async () => {
    // same case, the session's side: a savepoint committed by hand is only committed if the session is
    const calls: unknown[] = [];
    await expect(
      h.SessionLocal.begin(async () => {
        const t = await h.engine.sequelize.transaction();
        t.afterCommit(() => {
          calls.push('hook');
        });
        await User.create({ username: 'lost' }, { transaction: t });
        await t.commit();
        throw new Error('the session rolls back');
      }),
    ).rejects.toThrow('the session rolls back');
    expect(calls).toEqual([]);
    expect(await committedUsers()).toEqual([]);
  });

  for (const [label, hook] of [
    ['null', null],
    ['undefined', undefined],
    ['an object', {}],
  ] as const) {
    it(`should throw an error if ${label} is passed to afterCommit`, async () => {
      await h.SessionLocal.begin(async (session) => {
        const t = await session.transaction();
        expect(() => t.afterCommit(hook as never)).toThrow('"fn" must be a function');
        const savepoint = await h.engine.sequelize.transaction();
        expect(() => savepoint.afterCommit(hook as never)).toThrow('"fn" must be a function');
        await savepoint.rollback();
      });
    });
  }

  it('does not allow commits after rollback (the session transaction)', async () => {
    // DIVERGENCE: see "does not allow commits after commit"
    const session = h.SessionLocal();
    try {
      await session.run(async () => {
        const t = await session.transaction();
        await t.rollback();
        expect((t as Tx).finished).toBe('rollback');
        await User.create({ username: 'second cycle' });
        await expect(t.commit()).rejects.toThrow('Transaction cannot be committed because it has been finished with state: rollback');
        await session.rollback();
      });
    } finally {
      await session.close();
    }
    expect(await committedUsers()).toEqual([]);
  });

  it('does not allow commits after rollback (a savepoint)', async () => {
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      await t.rollback();
      await expect(t.commit()).rejects.toThrow('Transaction cannot be committed because it has been finished with state: rollback');
    });
  });

  it('does not allow rollbacks after commit (the session transaction)', async () => {
    // DIVERGENCE: see "does not allow commits after commit"
    const session = h.SessionLocal();
    try {
      await session.run(async () => {
        const t = await session.transaction();
        await t.commit();
        await User.create({ username: 'second cycle' });
        await expect(t.rollback()).rejects.toThrow('Transaction cannot be rolled back because it has been finished with state: commit');
        await session.commit();
      });
    } finally {
      await session.close();
    }
    expect(await committedUsers()).toEqual(['second cycle']);
  });

  it('does not allow rollbacks after commit (a savepoint)', async () => {
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      await t.commit();
      await expect(t.rollback()).rejects.toThrow('Transaction cannot be rolled back because it has been finished with state: commit');
    });
  });

  it('does not allow rollbacks after rollback (the session transaction)', async () => {
    // DIVERGENCE: see "does not allow commits after commit"
    const session = h.SessionLocal();
    try {
      await session.run(async () => {
        const t = await session.transaction();
        await t.rollback();
        await User.create({ username: 'second cycle' });
        await expect(t.rollback()).rejects.toThrow('Transaction cannot be rolled back because it has been finished with state: rollback');
        await session.commit();
      });
    } finally {
      await session.close();
    }
    expect(await committedUsers()).toEqual(['second cycle']);
  });

  it('does not allow rollbacks after rollback (a savepoint)', async () => {
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      await t.rollback();
      await expect(t.rollback()).rejects.toThrow('Transaction cannot be rolled back because it has been finished with state: rollback');
    });
  });

  it('works even if a transaction: null option is passed', async () => {
    // inside a session, `transaction: null` asks for no parent: an independent transaction on its
    // own connection, whose statements all carry it, and which the session's rollback cannot undo
    const seen: unknown[] = [];
    const { sequelize } = h.engine;
    const query = sequelize.query;
    await expect(
      h.SessionLocal.begin(async () => {
        sequelize.query = function (this: unknown, sql: unknown, options?: { transaction?: unknown }) {
          seen.push(options?.transaction);
          return query.call(this, sql as string, options as never);
        } as typeof query;
        let t: Transaction;
        try {
          t = await sequelize.transaction({ transaction: null } as never);
          await User.create({ username: 'independent' }, { transaction: t });
          await t.commit();
        } finally {
          delete (sequelize as { query?: unknown }).query;
        }
        expect((t as unknown as { parent?: unknown }).parent).toBeUndefined();
        expect(seen.length).toBeGreaterThan(0);
        for (const used of seen) expect(used).toBe(t);
        throw new Error('the session rolls back');
      }),
    ).rejects.toThrow('the session rolls back');
    expect(await committedUsers()).toEqual(['independent']);
  });

  it('works even if a transaction: undefined option is passed', async () => {
    // inside a session, `transaction: undefined` is "no option": the new transaction is a SAVEPOINT of the session
    const seen: unknown[] = [];
    const { sequelize } = h.engine;
    const query = sequelize.query;
    await h.SessionLocal.begin(async (session) => {
      const root = await session.transaction();
      sequelize.query = function (this: unknown, sql: unknown, options?: { transaction?: unknown }) {
        seen.push(options?.transaction);
        return query.call(this, sql as string, options as never);
      } as typeof query;
      let t: Transaction;
      try {
        t = await sequelize.transaction({ transaction: undefined });
        await t.commit();
      } finally {
        delete (sequelize as { query?: unknown }).query;
      }
      expect((t as unknown as { parent?: unknown }).parent).toBe(root);
      expect(seen.length).toBeGreaterThan(0);
      for (const used of seen) expect([t, root]).toContain(used);
    });
  });
});

describe('transaction.test.js > Transaction > isolation levels', () => {
  it('should read the most recent committed rows when using the READ COMMITTED isolation level', async () => {
    await h.SessionLocal.begin(
      async () => {
        expect(await User.findAll()).toHaveLength(0);
        await User.create({ username: 'jan' }, { transaction: null }); // outside the session
        expect(await User.findAll()).toHaveLength(1);
      },
      { isolationLevel: 'READ COMMITTED' },
    );
  });

  it('should not read newly committed rows when using the REPEATABLE READ isolation level', async () => {
    await h.SessionLocal.begin(
      async () => {
        expect(await User.findAll()).toHaveLength(0);
        await User.create({ username: 'jan' }, { transaction: null });
        expect(await User.findAll()).toHaveLength(0);
      },
      { isolationLevel: 'REPEATABLE READ' },
    );
  });

  it('refuses sequelize.transaction({ isolationLevel }) inside a session (READ COMMITTED / REPEATABLE READ cases)', async () => {
    // DIFFERENCE: a nested transaction is a SAVEPOINT, which cannot change the isolation level:
    // refused up front (NestedTransactionError) instead of silently running at the session's level
    await h.SessionLocal.begin(async () => {
      await User.count();
      await expect(h.engine.sequelize.transaction({ isolationLevel: Transaction.ISOLATION_LEVELS.REPEATABLE_READ }, async () => User.count())).rejects.toBeInstanceOf(NestedTransactionError);
      expect(await User.count()).toBe(0);
    });
  });
});

describe('transaction.test.js > Transaction > row locking', () => {
  it('supports for update', async () => {
    await h.SessionLocal.begin(() => User.create({ username: 'jan' }));
    const order: string[] = [];
    const t1 = h.SessionLocal();
    const t2 = h.SessionLocal({ isolationLevel: 'READ COMMITTED' });
    const jan = await t1.run(() => User.findOne({ where: { username: 'jan' }, lock: Transaction.LOCK.UPDATE }));
    const blocked = t2.run(async () => {
      const found = await User.findOne({ where: { username: 'jan' }, lock: Transaction.LOCK.UPDATE });
      order.push('t2 found');
      await t2.commit();
      return found;
    });
    await blockedOnLock();
    await t1.run(async () => {
      await jan!.update({ awesome: true });
      order.push('t1 updated');
      await t1.commit();
    });
    const found = await blocked;
    // t2's find waited for t1's COMMIT: it returns the row as t1 committed it
    expect(order).toEqual(['t1 updated', 't2 found']);
    expect(found!.get('awesome')).toBe(true);
    await Promise.all([t1.close(), t2.close()]);
  });

  it('supports for update with skip locked', async () => {
    await h.SessionLocal.begin(() => Promise.all([User.create({ username: 'jan' }), User.create({ username: 'joe' })]));
    const t1 = h.SessionLocal();
    const t2 = h.SessionLocal();
    const first = await t1.run(() => User.findAll({ limit: 1, lock: true }));
    const second = await t2.run(() => User.findAll({ limit: 1, lock: true, skipLocked: true }));
    expect(second[0]!.get('id')).not.toBe(first[0]!.get('id'));
    await Promise.all([t1.commit(), t2.commit()]);
    await Promise.all([t1.close(), t2.close()]);
  });

  it('fail locking with outer joins', async () => {
    // DIFFERENCE: the failed statement aborted the transaction, so the session's COMMIT throws
    // (Sequelize's COMMIT of an aborted transaction "succeeds" as a silent ROLLBACK)
    await h.SessionLocal.begin(async () => {
      const [john, task] = await Promise.all([User.create({ username: 'John' }), Task.create({ title: 'Get rich', active: false })]);
      await (john as unknown as { setTasks(t: unknown[]): Promise<void> }).setTasks([task]);
    });
    const attempt = h.SessionLocal.begin(async () => {
      await expect(User.findOne({ where: { username: 'John' }, include: [Task], lock: Transaction.LOCK.UPDATE })).rejects.toThrow('FOR UPDATE cannot be applied to the nullable side of an outer join');
    });
    const error = await attempt.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CommitError);
    expect(String((error as Error).message)).toMatch(/FOR UPDATE cannot be applied to the nullable side of an outer join/);
  });

  it('supports for update of table', async () => {
    await h.SessionLocal.begin(async () => {
      const [john, task1] = await Promise.all([User.create({ username: 'John' }), Task.create({ title: 'Get rich', active: false }), Task.create({ title: 'Die trying', active: false })]);
      await (john as unknown as { setTasks(t: unknown[]): Promise<void> }).setTasks([task1]);
    });
    await h.SessionLocal.begin(async () => {
      const john = await User.findOne({ where: { username: 'John' }, include: [Task], lock: { level: Transaction.LOCK.UPDATE, of: User } });
      // another session updating the tasks is not blocked by the lock of this one (only Person rows are locked)
      const [updated] = await h.SessionLocal.begin(() => Task.update({ active: true }, { where: { active: false } }), { settings: { lock_timeout: '5s' } });
      expect(updated).toBe(2);
      await john!.save();
    });
  });

  it('supports for key share', async () => {
    await h.SessionLocal.begin(() => User.create({ username: 'jan' }));
    const order: string[] = [];
    const t1 = h.SessionLocal();
    // a KEY SHARE lock is compatible with t1's NO KEY UPDATE lock: were it not, lock_timeout fails t2
    const t2 = h.SessionLocal({ settings: { lock_timeout: '5s' } });
    const jan = await t1.run(() => User.findOne({ where: { username: 'jan' }, lock: Transaction.LOCK.NO_KEY_UPDATE }));
    await t2.run(async () => {
      await User.findOne({ where: { username: 'jan' }, lock: Transaction.LOCK.KEY_SHARE });
      order.push('t2 locked key share');
      await t2.commit();
    });
    await t1.run(async () => {
      await jan!.update({ awesome: true });
      order.push('t1 updated');
      await t1.commit();
    });
    expect(order).toEqual(['t2 locked key share', 't1 updated']);
    await Promise.all([t1.close(), t2.close()]);
  });

  it('supports for share (i.e. `SELECT ... LOCK IN SHARE MODE`)', async () => {
    const jan = await h.SessionLocal.begin(() => User.create({ username: 'jan' }));
    const order: string[] = [];
    const t1 = h.SessionLocal();
    const t2 = h.SessionLocal({ isolationLevel: 'READ COMMITTED' });
    await t1.run(() => User.findByPk(jan.get('id') as number, { lock: Transaction.LOCK.SHARE }));
    const t2Jan = await t2.run(() => User.findByPk(jan.get('id') as number));
    const update = t2.run(async () => {
      order.push('Begin attempt to update via T2');
      await t2Jan!.update({ awesome: false });
      order.push('Done updating via T2');
      await t2.commit();
      order.push('Done committing T2');
    });
    await blockedOnLock();
    await t1.run(async () => {
      order.push('Begin attempt to read via T1');
      await User.findAll();
      order.push('Done reading via T1');
      order.push('Attempting to commit T1');
      await t1.commit();
      order.push('Done committing T1');
    });
    await update;
    // as upstream, either order of "Done committing T1" and "Done updating via T2" is the same
    // database order (the COMMIT's reply and the unblocked UPDATE's reply race on the JS side)
    const expected = [
      'Begin attempt to update via T2',
      'Begin attempt to read via T1',
      'Done reading via T1',
      'Attempting to commit T1',
      'Done committing T1',
      'Done updating via T2',
      'Done committing T2',
    ];
    const alsoAcceptable = [
      'Begin attempt to update via T2',
      'Begin attempt to read via T1',
      'Done reading via T1',
      'Attempting to commit T1',
      'Done updating via T2',
      'Done committing T1',
      'Done committing T2',
    ];
    expect([expected, alsoAcceptable]).toContainEqual(order);
    await Promise.all([t1.close(), t2.close()]);
    expect((await h.observer.query('SELECT awesome FROM "Person"')).rows[0].awesome).toBe(false);
  });
});

describe('sequelize.transaction.test.js > Sequelize#transaction', () => {
  it('Transaction#commit > returns a promise that resolves once the transaction has been committed', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const t = await session.transaction();
      await expect(t.commit()).resolves.toBeUndefined();
      expect(session.inTransaction).toBe(false);
      await User.count();
      await expect(session.commit()).resolves.toBeUndefined();
    });
    await session.close();
  });

  it('Transaction#commit > does not pollute the pool with broken connections if commit fails', async () => {
    const session = h.SessionLocal();
    await session.run(() => User.create({ username: 'lost' }));
    const connection = session.heldConnection;
    const pid = (connection as unknown as { processID: number }).processID;
    expect(pooled(connection)).toBe(true);
    await h.observer.query('SELECT pg_terminate_backend($1)', [pid]);
    // DIFFERENCE: when the client has not yet read the backend's FATAL, the COMMIT it writes is
    // answered by the termination: the outcome is reported as unknown (CommitOutcomeUnknownError,
    // docs/production.md), else as a rollback (CommitError). Either way the connection is destroyed.
    const error = await session.commit().catch((e: unknown) => e);
    expect(error instanceof CommitError || error instanceof CommitOutcomeUnknownError).toBe(true);
    expect(pooled(connection)).toBe(false);
    await session.close();
    const next = await h.SessionLocal.begin(() => h.engine.sequelize.query('SELECT pg_backend_pid() AS pid', { plain: true }));
    expect((next as { pid: number }).pid).not.toBe(pid);
    expect(await committedUsers()).toEqual([]);
  });

  it('Transaction#rollback > returns a promise that resolves once the transaction has been rolled back', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      await User.create({ username: 'rolled back' });
      const t = await session.transaction();
      await expect(t.rollback()).resolves.toBeUndefined();
    });
    await session.close();
    expect(await committedUsers()).toEqual([]);
  });

  it('Transaction#rollback > does not pollute the pool with broken connections if the rollback fails', async () => {
    // DIFFERENCE: session.rollback() does not throw when ROLLBACK cannot be sent: the server rolls
    // back a dead backend's transaction anyway; the connection is destroyed, never pooled again
    const session = h.SessionLocal();
    await session.run(() => User.create({ username: 'lost' }));
    const connection = session.heldConnection;
    const pid = (connection as unknown as { processID: number }).processID;
    expect(pooled(connection)).toBe(true);
    await h.observer.query('SELECT pg_terminate_backend($1)', [pid]);
    // pg_terminate_backend only signals: wait until the backend is gone (a loaded machine may still answer a ROLLBACK sent at once)
    for (let i = 0; i < 100; i++) {
      const { rows } = await h.observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rows.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await expect(session.rollback()).resolves.toBeUndefined();
    expect(pooled(connection)).toBe(false);
    await session.close();
  });

  it('works for long running transactions', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      await h.engine.sequelize.query('select pg_sleep(0.3);');
      await User.create({ username: 'foo' });
      await h.engine.sequelize.query('select pg_sleep(0.3);');
      await session.commit();
    });
    await session.close();
    const users = await User.findAll();
    expect(users).toHaveLength(1);
    expect(users[0]!.get('username')).toBe('foo');
  });

  it('complex long running example > works with promise syntax', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const transaction = await session.transaction();
      expect(transaction).toBeInstanceOf(Transaction);
      await User.create({ username: 'Peter' });
      await delay(200);
      await transaction.commit();
    });
    await session.close();
    expect(await User.count()).toBe(1);
  });

  it('concurrency: having tables with uniqueness constraints > triggers the error event for the second transactions', async () => {
    const t1 = h.SessionLocal();
    const t2 = h.SessionLocal();
    await t1.run(() => Unique.create({ name: 'omnom' }));
    await t2.begin();
    const second = t2.run(async () => {
      try {
        return await Unique.create({ name: 'omnom' });
      } catch (error) {
        expect(error).toBeInstanceOf(UniqueConstraintError);
        expect(t2.state).toBe('failed');
        await t2.rollback();
        return undefined;
      }
    });
    await blockedOnLock();
    await t1.commit();
    expect(await second).toBeUndefined();
    await Promise.all([t1.close(), t2.close()]);
    expect(await Unique.count()).toBe(1);
  });
});

describe('sequelize.test.js > Sequelize > define > transaction', () => {
  it('passes a transaction object to the callback', async () => {
    await h.SessionLocal.begin(async (session) => {
      const t = await h.engine.sequelize.transaction();
      expect(t).toBeInstanceOf(Transaction);
      expect((t as unknown as { parent: unknown }).parent).toBe(await session.transaction());
      await t.rollback();
    });
  });

  it('allows me to define a callback on the result', async () => {
    await h.SessionLocal.begin(async () => {
      const t = await h.engine.sequelize.transaction();
      await expect(t.commit()).resolves.toBeUndefined();
    });
  });

  it('correctly handles multiple transactions', async () => {
    const count = (transaction?: null) =>
      h.engine.sequelize.query('SELECT count(*)::int AS cnt FROM "Person"', { plain: true, ...(transaction === null && { transaction }) }).then((r) => (r as { cnt: number }).cnt);
    const t1 = h.SessionLocal();
    const t2 = h.SessionLocal();
    await t1.run(() => h.engine.sequelize.query(`INSERT INTO "Person" ("username", "createdAt", "updatedAt") VALUES ('foo', now(), now())`));
    await t2.run(() => h.engine.sequelize.query(`INSERT INTO "Person" ("username", "createdAt", "updatedAt") VALUES ('bar', now(), now())`));
    expect(await count(null)).toBe(0);
    expect(await t1.run(() => count())).toBe(1);
    expect(await t2.run(() => count())).toBe(1);
    await t2.rollback();
    expect(await count(null)).toBe(0);
    await t1.commit();
    expect(await count(null)).toBe(1);
    await Promise.all([t1.close(), t2.close()]);
  });

  it('supports nested transactions using savepoints', async () => {
    await h.SessionLocal.begin(async () => {
      const user = await User.create({ username: 'foo' });
      await h.engine.sequelize.transaction(async () => {
        await user.update({ username: 'bar' });
      });
      expect((await user.reload()).get('username')).toBe('bar');
    });
    expect(await committedUsers()).toEqual(['bar']);
  });

  it('supports rolling back to savepoints > rolls back to the first savepoint, undoing everything', async () => {
    await h.SessionLocal.begin(async (session) => {
      const transaction = await session.transaction();
      const sp1 = await h.engine.sequelize.transaction({ transaction });
      await User.create({}, { transaction });
      await h.engine.sequelize.transaction({ transaction });
      await User.create({});
      expect(await User.findAll()).toHaveLength(2);
      await sp1.rollback();
      expect(await User.findAll()).toHaveLength(0);
    });
    expect(await User.count()).toBe(0);
  });

  it('supports rolling back to savepoints > rolls back to the most recent savepoint, only undoing recent changes', async () => {
    await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.transaction();
      await User.create({});
      const sp2 = await h.engine.sequelize.transaction();
      await User.create({});
      expect(await User.findAll()).toHaveLength(2);
      await sp2.rollback();
      expect(await User.findAll()).toHaveLength(1);
    });
    expect(await User.count()).toBe(1);
  });

  it('supports rolling back a nested transaction', async () => {
    await h.SessionLocal.begin(async () => {
      const user = await User.create({ username: 'foo' });
      const t2 = await h.engine.sequelize.transaction();
      await user.update({ username: 'bar' }, { transaction: t2 });
      await t2.rollback();
      expect((await user.reload()).get('username')).toBe('foo');
    });
    expect(await committedUsers()).toEqual(['foo']);
  });

  it('supports rolling back a nested transaction (the unit fails on the server)', async () => {
    // the unit's failed statement aborted only its savepoint: ROLLBACK TO SAVEPOINT recovers the session
    await h.SessionLocal.begin(async (session) => {
      await User.create({ username: 'outer' });
      await expect(
        h.engine.sequelize.transaction(async () => {
          await User.create({ username: 'inner' });
          await h.engine.sequelize.query('SELECT * FROM no_such_table');
        }),
      ).rejects.toThrow(/no_such_table/);
      expect(session.state).toBe('active');
      await User.create({ username: 'after' });
    });
    expect(await committedUsers()).toEqual(['outer', 'after']);
  });

  it('supports rolling back outermost transaction', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      const user = await User.create({ username: 'foo' });
      const t2 = await h.engine.sequelize.transaction();
      await user.update({ username: 'bar' }, { transaction: t2 });
      await (await session.transaction()).rollback();
    });
    await session.close();
    expect(await User.findAll()).toHaveLength(0);
  });
});

describe('sequelize/deferrable.test.js > Sequelize > Deferrable', () => {
  let seq = 0;
  const variants: Array<[string, (d: unknown, users: string, tasks: string) => Promise<{ Task: AnyModel; User: AnyModel }>]> = [
    [
      'set in define',
      async (deferrable, users, tasks) => {
        const { sequelize } = h.engine;
        const DUser = sequelize.define(`DUser${seq}`, { name: DataTypes.STRING }, { tableName: users });
        const DTask = sequelize.define(
          `DTask${seq}`,
          { title: DataTypes.STRING, user_id: { allowNull: false, type: DataTypes.INTEGER, references: { model: users, key: 'id', deferrable: deferrable as never } } },
          { tableName: tasks },
        );
        await h.engine.autocommit(async () => {
          await DUser.sync({ force: true });
          await DTask.sync({ force: true });
        });
        return { Task: DTask, User: DUser };
      },
    ],
    [
      'set in addConstraint',
      async (deferrable, users, tasks) => {
        const { sequelize } = h.engine;
        const DUser = sequelize.define(`DUser${seq}`, { name: DataTypes.STRING }, { tableName: users });
        const DTask = sequelize.define(`DTask${seq}`, { title: DataTypes.STRING, user_id: { allowNull: false, type: DataTypes.INTEGER } }, { tableName: tasks });
        await h.engine.autocommit(async () => {
          await DUser.sync({ force: true });
          await DTask.sync({ force: true });
          await sequelize
            .getQueryInterface()
            .addConstraint(tasks, { fields: ['user_id'], type: 'foreign key', name: `${tasks}_user_id_fkey`, deferrable: deferrable as never, references: { table: users, field: 'id' } } as never);
        });
        return { Task: DTask, User: DUser };
      },
    ],
  ];

  for (const [title, defineModels] of variants) {
    describe(title, () => {
      // the nested transaction with `deferrable` is a SAVEPOINT plus `SET CONSTRAINTS …`; the
      // deferred checks run at the session's COMMIT, so SessionLocal.begin is what settles it
      const run = async (deferrable: unknown, options: { deferrable?: unknown; taskTableName?: string } = {}) => {
        seq++;
        const tasks = options.taskTableName ?? `tasks_${seq}`;
        const { Task: DTask, User: DUser } = await defineModels(deferrable, `users_${seq}`, tasks);
        const transactionOptions = { deferrable: Deferrable.SET_DEFERRED, ...options };
        delete (transactionOptions as { taskTableName?: string }).taskTableName;
        return h.SessionLocal.begin(() =>
          h.engine.sequelize.transaction(transactionOptions as never, async () => {
            const task = await DTask.create({ title: 'a task', user_id: -1 });
            const user = await DUser.create({});
            task.set('user_id', user.get('id'));
            return task.save();
          }),
        );
      };

      it('NOT > does not allow the violation of the foreign key constraint', async () => {
        await expect(run(Deferrable.NOT)).rejects.toBeInstanceOf(ForeignKeyConstraintError);
      });

      it('INITIALLY_IMMEDIATE > allows the violation of the foreign key constraint if the transaction is deferred', async () => {
        const task = await run(Deferrable.INITIALLY_IMMEDIATE);
        expect(task.get('title')).toBe('a task');
        expect(task.get('user_id')).toBe(1);
      });

      it('INITIALLY_IMMEDIATE > does not allow the violation of the foreign key constraint if the transaction is not deffered', async () => {
        await expect(run(Deferrable.INITIALLY_IMMEDIATE, { deferrable: undefined })).rejects.toBeInstanceOf(ForeignKeyConstraintError);
      });

      it('INITIALLY_IMMEDIATE > allows the violation of the foreign key constraint if the transaction deferres only the foreign key constraint', async () => {
        const taskTableName = `tasks_only_${seq + 1}`;
        const task = await run(Deferrable.INITIALLY_IMMEDIATE, { deferrable: Deferrable.SET_DEFERRED([`${taskTableName}_user_id_fkey`]), taskTableName });
        expect(task.get('title')).toBe('a task');
        expect(task.get('user_id')).toBe(1);
      });

      it('INITIALLY_DEFERRED > allows the violation of the foreign key constraint', async () => {
        const task = await run(Deferrable.INITIALLY_DEFERRED);
        expect(task.get('title')).toBe('a task');
        expect(task.get('user_id')).toBe(1);
      });
    });
  }

  it('a deferred violation left in place fails the session COMMIT, not the nested unit (INITIALLY_DEFERRED case)', async () => {
    // DIFFERENCE: the unit's RELEASE SAVEPOINT checks nothing; PostgreSQL checks deferred
    // constraints at the session's COMMIT, which throws CommitError and rolls everything back
    seq++;
    const { Task: DTask } = await variants[0]![1](Deferrable.INITIALLY_DEFERRED, `users_${seq}`, `tasks_${seq}`);
    let unitDone = false;
    const error = await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.transaction(async () => DTask.create({ title: 'orphan', user_id: -1 }));
      unitDone = true;
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(unitDone).toBe(true);
    expect(error).toBeInstanceOf(CommitError);
    expect(String((error as Error).message)).toMatch(/foreign key/);
    expect(await DTask.count()).toBe(0);
  });
});

describe('sequelize/truncate.test.js > Sequelize#truncate', () => {
  it('supports truncating cyclic associations with { cascade: true }', async () => {
    const { sequelize } = h.engine;
    const A = sequelize.define('A', { BId: { type: DataTypes.INTEGER } });
    const B = sequelize.define('B', { AId: { type: DataTypes.INTEGER } });
    A.belongsTo(B, { foreignKey: { allowNull: true } });
    B.belongsTo(A, { foreignKey: { allowNull: false } });
    await h.engine.autocommit(() => sequelize.sync());
    await h.SessionLocal.begin(() =>
      sequelize.transaction({ deferrable: Deferrable.SET_DEFERRED } as never, async () => {
        const a = await A.create({ BId: null });
        const b = await B.create({ AId: a.get('id') });
        a.set('BId', b.get('id'));
        await a.save();
      }),
    );
    expect(await A.count()).toBe(1);
    // truncate inside a session is part of it: rolled back with it, committed with it
    await expect(
      h.SessionLocal.begin(async () => {
        await A.truncate({ cascade: true });
        expect(await A.count()).toBe(0);
        throw new Error('roll back the truncate');
      }),
    ).rejects.toThrow('roll back the truncate');
    expect(await A.count()).toBe(1);
    await h.SessionLocal.begin(async () => {
      await A.truncate({ cascade: true });
      await B.truncate({ cascade: true });
    });
    expect(await A.count()).toBe(0);
    expect(await B.count()).toBe(0);
  });
});

describe('pool.test.js > Pooling > acquire', () => {
  it('should reject with ConnectionAcquireTimeoutError when unable to acquire connection for transaction', async () => {
    // DIFFERENCE: a nested transaction inside a session is a SAVEPOINT on the session's connection,
    // so it needs no second connection and cannot exhaust a one-connection pool; a second session
    // that cannot get a connection gets PoolTimeoutError (the adapters answer 503)
    const engine = createEngine(h.db.url, { pool: { max: 1, acquireTimeoutMs: 300 } });
    h.engines.push(engine);
    const Local = sessionmaker(engine);
    const held = gate();
    let holder!: Session;
    const first = Local.begin(async (s) => {
      holder = s;
      await engine.sequelize.transaction(async () => {
        await engine.sequelize.transaction(() => engine.sequelize.query('SELECT 1'));
      });
      held.open();
      await new Promise((resolve) => setTimeout(resolve, 600));
    });
    await held.opened;
    expect(holder.inTransaction).toBe(true);
    await expect(Local.begin(() => engine.sequelize.transaction(async () => undefined))).rejects.toBeInstanceOf(PoolTimeoutError);
    await first;
  });
});

describe('replication.test.js > Replication', () => {
  type Spied = { acquire: (...a: unknown[]) => unknown };
  const withSpies = async (fn: (Local: ReturnType<typeof sessionmaker>, engine: ReturnType<typeof createEngine>) => Promise<unknown>) => {
    const engine = createEngine(h.db.url, { replicas: [h.db.url], pool: { max: 2 }, replicaOptions: { checkIntervalMs: 0 } });
    h.engines.push(engine);
    // DIFFERENCE: one pool per replica next to Sequelize's own (the primary's), instead of Sequelize's read/write pools
    const pools = {
      read: (engine.replicaSet as unknown as { replicas: Array<{ pool: Spied }> }).replicas[0]!.pool,
      write: (engine.sequelize as unknown as { connectionManager: { pool: Spied } }).connectionManager.pool,
    };
    const calls = { read: 0, write: 0 };
    for (const kind of ['read', 'write'] as const) {
      const original = pools[kind].acquire;
      pools[kind].acquire = function (this: unknown, ...args: unknown[]) {
        calls[kind]++;
        return original.apply(this, args);
      };
    }
    await fn(sessionmaker(engine), engine);
    return calls;
  };

  it('should run read-only transactions on the replica', async () => {
    const RUser = () => h.engine.sequelize.models.User!;
    const calls = await withSpies(async (Local, engine) => {
      const Replicated = engine.sequelize.define('User', RUser().getAttributes(), { tableName: 'Person' });
      await Local.begin(() => Replicated.findAll(), { readOnly: true });
    });
    expect(calls.read).toBeGreaterThanOrEqual(1);
    expect(calls.write).toBe(0);
  });

  it('should run non-read-only transactions on the primary', async () => {
    const calls = await withSpies(async (Local, engine) => {
      const Replicated = engine.sequelize.define('User', h.engine.sequelize.models.User!.getAttributes(), { tableName: 'Person' });
      await Local.begin(() => Replicated.findAll());
      // DIFFERENCE: inside a writable session, a nested readOnly transaction cannot move to the
      // replica (it is a SAVEPOINT of the session's connection): refused
      await expect(Local.begin(() => engine.sequelize.transaction({ readOnly: true }, async () => undefined))).rejects.toBeInstanceOf(NestedTransactionError);
    });
    expect(calls.write).toBeGreaterThanOrEqual(1);
    expect(calls.read).toBe(0);
  });
});

/*
 * Sequelize v6's own CLS and transaction integration cases, ported to "inside a session".
 *
 * Source: sequelize/sequelize, branch v6 (cb7f99ad), test/integration/…; every test below names its
 * origin as `file > describe > it`. The behaviour carries over, the code does not. The port is
 * split over three files:
 * - sequelize-v6-cases.test.ts (this file): cls.test.js
 * - sequelize-v6-cases-transaction.test.ts: transaction.test.js, sequelize.transaction.test.js,
 *   sequelize.test.js (describe 'transaction'), sequelize/deferrable.test.js,
 *   sequelize/truncate.test.js, pool.test.js, replication.test.js
 * - sequelize-v6-cases-models.test.ts: the "supports transactions" cases of model*, instance/*,
 *   associations/* (hooks/* has none: its transaction behaviour is cls.test.js's "Model Hook integration")
 *
 * Translation: `sequelize.transaction(cb)` with CLS on becomes `SessionLocal.begin(cb)` (the
 * session's transaction is what CLS would hold); "a query without the transaction" becomes
 * `transaction: null` (sessionlocal's explicit way out of the session); a nested
 * `sequelize.transaction()` inside a session is a SAVEPOINT of it. Where sessionlocal differs on
 * purpose, the test asserts sessionlocal's documented behaviour and says why (`// DIFFERENCE:`).
 * `it.fails` marks a case that diverges in a way that looks like a bug (`// DIVERGENCE:`).
 *
 * Counts are upstream cases (one `it`, or one generated `it` of a loop); a case is "passing" when
 * every test ported from it passes, "divergent" when one of them is an `it.fails`.
 *
 * | source file (test/integration/)               | read | skipped | covered | passing | divergent |
 * |-----------------------------------------------|-----:|--------:|--------:|--------:|----------:|
 * | cls.test.js                                   |   26 |       0 |      26 |      25 |         1 |
 * | transaction.test.js                           |   46 |      14 |      32 |      28 |         4 |
 * | sequelize.transaction.test.js                 |    7 |       0 |       7 |       7 |         0 |
 * | sequelize.test.js (describe 'transaction', 'set') | 13 |     5 |       8 |       8 |         0 |
 * | sequelize/deferrable.test.js                  |   10 |       0 |      10 |      10 |         0 |
 * | sequelize/truncate.test.js                    |    1 |       0 |       1 |       1 |         0 |
 * | pool.test.js (the transaction case)           |    1 |       0 |       1 |       1 |         0 |
 * | replication.test.js (the transaction cases)   |    2 |       0 |       2 |       2 |         0 |
 * | model.test.js ("supports transactions" …)     |    8 |       0 |       8 |       8 |         0 |
 * | model/create.test.js (findOrCreate, findCreateFind, create) | 14 | 0 | 14 |    13 |         1 |
 * | model/findAll, findOne, bulk-create, json     |    6 |       0 |       6 |       6 |         0 |
 * | instance/{decrement,destroy,increment,reload,save,update} | 6 | 0 |   6 |       6 |         0 |
 * | associations/{belongs-to-many,belongs-to,has-many,has-one} | 16 | 0 | 16 |     16 |         0 |
 * | hooks/*.test.js (no transaction case; see cls.test.js hooks) | 0 | 0 | 0 |      0 |         0 |
 * | **total**                                     |  156 |      19 |     137 |     137 |         0 |
 *
 * Tests: 173 (this file 46, -transaction 75, -models 52), all passing. The 6 divergences the port
 * found (below, each with its `// DIVERGENCE:` diagnosis kept next to its test) are fixed and
 * their tests flipped from `it.fails` to `it`; a few are extras beyond the
 * upstream case (labelled as such). Not read: dialects/mssql/*, dialects/sqlite/* (other dialects).
 *
 * Skipped (19):
 * - transaction.test.js > deadlock handling (3): MySQL/MariaDB only (describe.skip upstream too).
 * - transaction.test.js > provides persistent transactions, automatically retries on SQLITE_BUSY
 *   failure, fails with SQLITE_BUSY when retry.match is changed, transaction types (1 + 3) (7): SQLite only.
 * - transaction.test.js > isolation levels > should block updates after reading a row using
 *   SERIALIZABLE (1): excluded for PostgreSQL upstream.
 * - transaction.test.js > constructor > should call dialect specific generateTransactionId method (1):
 *   its only assertion is MSSQL's id length.
 * - transaction.test.js > commit > is a commit method available, rollback > is a rollback method
 *   available (2): class shape of Transaction, no propagation involved.
 * - sequelize.test.js > set (3): MySQL/MariaDB only (`sequelize.set`).
 * - sequelize.test.js > define > transaction > correctly scopes transaction from other connections (1): SQLite only.
 * - sequelize.test.js > define > transaction > is a transaction method available (1): class shape, no propagation.
 *
 * Divergences found by the port (all fixed; the tests now assert the fixed behaviour):
 * - cls.test.js > context > supports several concurrent transactions (inside one session: refused):
 *   sibling units started in the same tick are both admitted (Session.enterUnit's placeholder).
 * - transaction.test.js > does not allow commits after commit / commits after rollback / rollbacks
 *   after commit / rollbacks after rollback (the session transaction): a stale session Transaction
 *   still delegates to session.commit()/rollback(), ending the session's newer cycle; `finished`
 *   reads 'commit' after a rollback.
 * - model/create.test.js > findCreateFind > [Flaky] should work with multiple concurrent calls
 *   (implicit form): findCreateFind never reads CLS, so without a transaction option its INSERT
 *   aborts the session (as with Sequelize.useCLS).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { DataTypes, Sequelize, type Model, type ModelStatic, type Transaction } from 'sequelize';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { NestedTransactionError } from '../src/index.js';
import { createEngine, sessionmaker, type Session } from '../src/index.js';
import { useDatabase } from './support.js';

// biome-ignore lint/suspicious/noExplicitAny: the ported cases' models are untyped, as upstream's
type AnyModel = ModelStatic<Model<any, any>>;

const h = useDatabase({ engine: { pool: { max: 6, acquireTimeoutMs: 5000 } } });

type Cls = { get(key: string): unknown };
/** Transaction fields Sequelize's typings leave out. */
type Tx = Transaction & { id: string };
/** The namespace Sequelize's model methods read (`this.sequelize.constructor._cls`). */
const cls = (): Cls => (h.engine.sequelize.constructor as unknown as { _cls: Cls })._cls;

let User: AnyModel;
let ParanoidUser: AnyModel;

beforeAll(async () => {
  const { sequelize } = h.engine;
  User = sequelize.define('user', { name: DataTypes.STRING });
  ParanoidUser = sequelize.define('ParanoidUser', { name: DataTypes.STRING }, { paranoid: true });
  await h.engine.autocommit(() => sequelize.sync({ force: true }));
});

beforeEach(async () => {
  await h.engine.autocommit(() => h.engine.sequelize.truncate({ restartIdentity: true, force: true } as object));
});

describe('cls.test.js > CLS (Async hooks) > context', () => {
  it('does not use continuation storage on manually managed transactions', async () => {
    // inside a session an unmanaged `sequelize.transaction()` is a SAVEPOINT; statements without a
    // transaction option keep joining the session's own transaction, never that savepoint
    await h.SessionLocal.begin(async (session) => {
      const root = await session.transaction();
      const savepoint = await h.engine.sequelize.transaction();
      expect((savepoint as unknown as { parent: Transaction }).parent).toBe(root);
      expect(cls().get('transaction')).toBe(root);
      await savepoint.rollback();
      expect(cls().get('transaction')).toBe(root);
    });
  });

  it('supports several concurrent transactions (concurrent sessions)', async () => {
    const ids = await Promise.all([
      h.SessionLocal.begin(async () => {
        await User.count();
        return (cls().get('transaction') as Tx).id;
      }),
      h.SessionLocal.begin(async () => {
        await User.count();
        return (cls().get('transaction') as Tx).id;
      }),
    ]);
    expect(ids[0]).toBeTruthy();
    expect(ids[1]).toBeTruthy();
    expect(ids[0]).not.toBe(ids[1]);
  });

  // DIVERGENCE: two sibling units started in the same tick are both admitted. Session.enterUnit
  // (src/session.ts) reserves the slot with `const placeholder = parent`, so the sibling's check
  // `parent !== innermost` compares the parent with itself and passes; both savepoints then
  // interleave on the connection (the second fails with 'savepoint "…-sp-2" does not exist' or
  // similar, and a healthy unit's work can be lost). Fix: reserve the slot with a sentinel that is
  // never a real Transaction (e.g. `const placeholder = {} as Transaction`, or a separate
  // `opening` counter checked next to `innermost`).
  it('supports several concurrent transactions (inside one session: refused)', async () => {
    // DIFFERENCE: two concurrent nested units of one session would interleave their savepoints on
    // its one connection; the second is refused with NestedTransactionError, the first commits
    await h.SessionLocal.begin(async () => {
      const results = await Promise.allSettled([
        h.engine.sequelize.transaction(async () => User.create({ name: 'first' })),
        h.engine.sequelize.transaction(async () => User.create({ name: 'second' })),
      ]);
      expect(results[0].status).toBe('fulfilled');
      expect(results[1].status).toBe('rejected');
      expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(NestedTransactionError);
    });
    expect((await User.findAll()).map((u) => u.get('name'))).toEqual(['first']);
  });

  it('supports several concurrent transactions (inside one session, second unit starting while the first is open: refused)', async () => {
    // DIFFERENCE: as above, once the first unit's savepoint exists
    await h.SessionLocal.begin(async () => {
      let opened!: () => void;
      const firstOpen = new Promise<void>((resolve) => {
        opened = resolve;
      });
      const first = h.engine.sequelize.transaction(async () => {
        await User.create({ name: 'first' });
        opened();
        await delay(20);
      });
      await firstOpen;
      await expect(h.engine.sequelize.transaction(async () => User.create({ name: 'second' }))).rejects.toBeInstanceOf(NestedTransactionError);
      await first;
    });
    expect((await User.findAll()).map((u) => u.get('name'))).toEqual(['first']);
  });

  it('supports nested promise chains', async () => {
    await h.SessionLocal.begin(async () => {
      const before = cls().get('transaction') as Tx;
      expect(before.id).toBeTruthy();
      await User.findAll();
      const after = cls().get('transaction') as Tx;
      expect(after.id).toBe(before.id);
      await h.engine.sequelize.transaction(async (t) => {
        expect(cls().get('transaction')).toBe(t);
        await User.findAll();
        expect(cls().get('transaction')).toBe(t);
      });
      expect(cls().get('transaction')).toBe(before);
    });
  });

  it('does not leak variables to the outer scope', async () => {
    let started!: () => void;
    const setUp = new Promise<void>((resolve) => {
      started = resolve;
    });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let ended = false;
    const task = h.SessionLocal.begin(async () => {
      await User.count();
      started();
      await gate;
      expect(cls().get('transaction')).toBeTruthy();
      ended = true;
    });
    await setUp;
    expect(ended).toBe(false);
    expect(cls().get('transaction')).toBeUndefined();
    expect(h.SessionLocal.currentOrUndefined()).toBeUndefined();
    release();
    await task;
    expect(ended).toBe(true);
  });

  it('does not leak variables to the following promise chain', async () => {
    await h.SessionLocal.begin(async () => {
      await User.count();
    });
    expect(cls().get('transaction')).toBeUndefined();
    await h.SessionLocal.begin(async () => {
      await h.engine.sequelize.transaction(async () => undefined);
      expect(cls().get('transaction')).toBe(h.SessionLocal.current().sequelizeTransaction());
    });
    expect(cls().get('transaction')).toBeUndefined();
  });

  it('does not leak outside findOrCreate', async () => {
    // every statement of findOrCreate, including its savepoint, runs on the session's connection
    // (logged with the transaction's id, never "default"); afterwards the session's transaction,
    // not findOrCreate's savepoint, is what statements join
    const logged: string[] = [];
    await h.SessionLocal.begin(async (session) => {
      await User.findOrCreate({ where: { name: 'Kafka' }, logging: (sql: string) => logged.push(sql) });
      const root = await session.transaction();
      expect(cls().get('transaction')).toBe(root);
      expect(await User.findAll()).toHaveLength(1);
    });
    expect(logged.length).toBeGreaterThan(0);
    expect(logged.filter((sql) => /\(default\)/.test(sql))).toEqual([]);
    expect(cls().get('transaction')).toBeUndefined();
  });
});

describe('cls.test.js > CLS (Async hooks) > sequelize.query integration', () => {
  it('automagically uses the transaction in all calls', async () => {
    await h.SessionLocal.begin(async () => {
      await User.create({ name: 'bob' });
      const [outside, inside] = await Promise.all([User.findAll({ transaction: null }), User.findAll({})]);
      expect(outside).toHaveLength(0);
      expect(inside).toHaveLength(1);
    });
  });

  it('automagically uses the transaction in all calls (outside any session: engine.sequelize.transaction(cb), as with useCLS)', async () => {
    let transaction!: Transaction;
    await h.engine.sequelize.transaction(async (t) => {
      transaction = t;
      await User.create({ name: 'bob' });
      expect(cls().get('transaction')).toBe(t);
      const [outside, inside] = await Promise.all([User.findAll({ transaction: null }), User.findAll({})]);
      expect(outside).toHaveLength(0);
      expect(inside).toHaveLength(1);
      await h.engine.sequelize.transaction(async (unit) => {
        expect((unit as unknown as { parent: unknown }).parent).toBe(t);
        expect(await User.count()).toBe(1);
      });
    });
    expect(cls().get('transaction')).toBeUndefined();
    expect((transaction as unknown as { finished: string }).finished).toBe('commit');
    expect(await User.count()).toBe(1);
  });

  it('automagically uses the transaction in all calls with async/await', async () => {
    await h.SessionLocal.begin(async () => {
      await User.create({ name: 'bob' });
      expect(await User.findAll({ transaction: null })).toHaveLength(0);
      expect(await User.findAll({})).toHaveLength(1);
    });
  });
});

interface HookCase {
  method: string;
  hooks: string[];
  optionPos: number;
  model: () => AnyModel;
  execute: (model: AnyModel) => Promise<unknown>;
}

const hookCases: HookCase[] = [
  {
    method: 'Model.bulkCreate',
    hooks: ['beforeBulkCreate', 'beforeCreate', 'afterCreate', 'afterBulkCreate'],
    optionPos: 1,
    model: () => User,
    execute: (M) => M.bulkCreate([{ name: 'bob' }], { individualHooks: true }),
  },
  { method: 'Model.findAll', hooks: ['beforeFind', 'beforeFindAfterExpandIncludeAll', 'beforeFindAfterOptions'], optionPos: 0, model: () => User, execute: (M) => M.findAll() },
  { method: 'Model.findAll', hooks: ['afterFind'], optionPos: 1, model: () => User, execute: (M) => M.findAll() },
  { method: 'Model.count', hooks: ['beforeCount'], optionPos: 0, model: () => User, execute: (M) => M.count() },
  { method: 'Model.upsert', hooks: ['beforeUpsert', 'afterUpsert'], optionPos: 1, model: () => User, execute: (M) => M.upsert({ id: 1, name: 'bob' }) },
  { method: 'Model.destroy', hooks: ['beforeBulkDestroy', 'afterBulkDestroy'], optionPos: 0, model: () => User, execute: (M) => M.destroy({ where: { name: 'bob' } }) },
  {
    method: 'Model.destroy with individualHooks',
    hooks: ['beforeDestroy', 'afterDestroy'],
    optionPos: 1,
    model: () => User,
    execute: async (M) => {
      await M.create({ name: 'bob' });
      await M.destroy({ where: { name: 'bob' }, individualHooks: true });
    },
  },
  {
    method: 'Model#destroy',
    hooks: ['beforeDestroy', 'afterDestroy'],
    optionPos: 1,
    model: () => User,
    execute: async (M) => {
      const user = await M.create({ name: 'bob' });
      await user.destroy();
    },
  },
  { method: 'Model.update', hooks: ['beforeBulkUpdate', 'afterBulkUpdate'], optionPos: 0, model: () => User, execute: (M) => M.update({ name: 'alice' }, { where: { name: 'bob' } }) },
  {
    method: 'Model.update with individualHooks',
    hooks: ['beforeUpdate', 'afterUpdate'],
    optionPos: 1,
    model: () => User,
    execute: async (M) => {
      await M.create({ name: 'bob' });
      await M.update({ name: 'alice' }, { where: { name: 'bob' }, individualHooks: true });
    },
  },
  {
    method: 'Model#save (isNewRecord)',
    hooks: ['beforeCreate', 'afterCreate'],
    optionPos: 1,
    model: () => User,
    execute: async (M) => {
      const user = M.build({ name: 'bob' });
      user.set('name', 'alice');
      await user.save();
    },
  },
  {
    method: 'Model#save (!isNewRecord)',
    hooks: ['beforeUpdate', 'afterUpdate'],
    optionPos: 1,
    model: () => User,
    execute: async (M) => {
      const user = await M.create({ name: 'bob' });
      user.set('name', 'alice');
      await user.save();
    },
  },
  { method: 'Model.restore', hooks: ['beforeBulkRestore', 'afterBulkRestore'], optionPos: 0, model: () => ParanoidUser, execute: (M) => M.restore({ where: { name: 'bob' } }) },
  {
    method: 'Model.restore with individualHooks',
    hooks: ['beforeRestore', 'afterRestore'],
    optionPos: 1,
    model: () => ParanoidUser,
    execute: async (M) => {
      await M.create({ name: 'bob' });
      await M.destroy({ where: { name: 'bob' } });
      await M.restore({ where: { name: 'bob' }, individualHooks: true });
    },
  },
  {
    method: 'Model#restore',
    hooks: ['beforeRestore', 'afterRestore'],
    optionPos: 1,
    model: () => ParanoidUser,
    execute: async (M) => {
      const user = await M.create({ name: 'bob' });
      await user.destroy();
      await user.restore();
    },
  },
];

/** Run `execute` with spies on `hooks`; returns the `transaction` each hook call saw. */
async function seenByHooks(c: HookCase): Promise<Map<string, unknown[]>> {
  const M = c.model();
  const seen = new Map<string, unknown[]>(c.hooks.map((name) => [name, []]));
  for (const name of new Set(c.hooks)) {
    (M.addHook as (hook: string, name: string, fn: (...args: unknown[]) => void) => void)(name, 'v6-probe', (...args: unknown[]) => {
      seen.get(name)!.push((args[c.optionPos] as { transaction?: unknown } | undefined)?.transaction);
    });
  }
  try {
    await c.execute(M);
  } finally {
    for (const name of new Set(c.hooks)) (M.removeHook as (hook: string, name: string) => void)(name, 'v6-probe');
  }
  return seen;
}

describe('cls.test.js > CLS (Async hooks) > Model Hook integration', () => {
  // the hooks run inside SessionLocal.begin with no transaction option anywhere, and the call is
  // the session's first statement: hooks must see the session's transaction from the start
  for (const c of hookCases) {
    const paranoid = c.model === hookCases[12]!.model ? ' (paranoid restore)' : '';
    it(`passes the transaction to hooks {${c.hooks.join(',')}} when calling ${c.method}${paranoid}`, async () => {
      await h.SessionLocal.begin(async (session) => {
        const seen = await seenByHooks(c);
        const root = await session.transaction();
        for (const [name, transactions] of seen) {
          expect(transactions.length, `hook ${name} was not called`).toBeGreaterThan(0);
          for (const t of transactions) expect(t, `hook ${name} did not receive the session's transaction`).toBe(root);
        }
      });
    });
  }
});

describe('cls.test.js > CLS (Async hooks) > Model Hook integration (inside a nested sequelize.transaction(cb))', () => {
  // upstream's exact shape, one level down: inside the unit, hooks see the unit's savepoint
  for (const c of hookCases) {
    const paranoid = c.model === hookCases[12]!.model ? ' (paranoid restore)' : '';
    it(`passes the transaction to hooks {${c.hooks.join(',')}} when calling ${c.method}${paranoid}`, async () => {
      await h.SessionLocal.begin(async (session) => {
        const root = await session.transaction();
        await h.engine.sequelize.transaction(async (unit) => {
          expect((unit as unknown as { parent: unknown }).parent).toBe(root);
          const seen = await seenByHooks(c);
          for (const [name, transactions] of seen) {
            expect(transactions.length, `hook ${name} was not called`).toBeGreaterThan(0);
            for (const t of transactions) expect(t, `hook ${name} did not receive the unit's transaction`).toBe(unit);
          }
        });
      });
    });
  }
});

describe('cls.test.js > CLS (Async hooks) > Model Hook integration (the hook uses its transaction)', () => {
  it('passes the transaction to hooks {afterCreate} when calling Model#save (isNewRecord): options.transaction.afterCommit on the first statement', async () => {
    // the case behind issue 13's first bullet: an afterCreate hook registering an afterCommit on
    // `options.transaction`, in a session whose first statement is that create
    const calls: string[] = [];
    const hook = (_instance: unknown, options: { transaction?: Transaction | null }) => {
      options.transaction!.afterCommit(() => {
        calls.push('after commit');
      });
    };
    User.addHook('afterCreate', 'v6-after-commit', hook as never);
    try {
      await h.SessionLocal.begin(async () => {
        await User.create({ name: 'bob' });
        expect(calls).toEqual([]);
      });
      expect(calls).toEqual(['after commit']);
      await expect(
        h.SessionLocal.begin(async () => {
          await User.create({ name: 'rolled back' });
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      expect(calls).toEqual(['after commit']);
    } finally {
      User.removeHook('afterCreate', 'v6-after-commit');
    }
  });
});

describe('cls.test.js > CLS (Async hooks)', () => {
  it('CLS namespace is stored in Sequelize._cls (a global useCLS namespace of another instance never captures the engine)', async () => {
    // DIFFERENCE: the engine never reads the global namespace. A legacy Sequelize instance using
    // Sequelize.useCLS in the same process answers its own transaction for every lookup; neither
    // the engine's out-of-session statements nor its sessions' may run in that transaction
    const legacy = new Sequelize(h.db.url, { logging: false, pool: { max: 1 } });
    const legacyTransaction = await legacy.transaction();
    const namespace = {
      get: (key: string) => (key === 'transaction' ? legacyTransaction : undefined),
      set: () => undefined,
      run: (fn: (context: object) => unknown) => fn({}),
      bind: <F>(fn: F) => fn,
    };
    Sequelize.useCLS(namespace);
    try {
      await User.create({ name: 'autocommit' });
      await h.SessionLocal.begin(() => User.create({ name: 'in session' }));
      const seen = await legacy.query('SELECT count(*)::int AS n FROM users', { transaction: legacyTransaction, plain: true });
      expect(seen).toEqual({ n: 2 });
    } finally {
      delete (Sequelize as unknown as { _cls?: unknown })._cls;
      await legacyTransaction.rollback();
      await legacy.close();
    }
    expect(await User.count()).toBe(2);
  });

  it('CLS namespace is stored in Sequelize._cls', async () => {
    // DIFFERENCE: each engine has its own namespace on its own Sequelize subclass; the global
    // `Sequelize._cls` (what `Sequelize.useCLS` sets) is never touched, so two engines (or an engine
    // and a legacy useCLS instance) never see each other's transactions
    const EngineSequelize = h.engine.sequelize.constructor as unknown as { _cls: Cls };
    expect(EngineSequelize._cls).toBeDefined();
    expect((Sequelize as unknown as { _cls?: unknown })._cls).toBeUndefined();
    const other = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(other);
    expect((other.sequelize.constructor as unknown as { _cls: Cls })._cls).not.toBe(EngineSequelize._cls);
    const OtherLocal = sessionmaker(other);
    await h.SessionLocal.begin(async () => {
      await User.count();
      expect(EngineSequelize._cls.get('transaction')).toBeTruthy();
      expect((other.sequelize.constructor as unknown as { _cls: Cls })._cls.get('transaction')).toBeUndefined();
      expect(OtherLocal.currentOrUndefined()).toBeUndefined();
    });
  });

  it('promises returned by sequelize.query are correctly patched', async () => {
    await h.SessionLocal.begin(async (session) => {
      await h.engine.sequelize.query('select 1', { type: 'SELECT' as never });
      expect(cls().get('transaction')).toBe(await session.transaction());
      await h.engine.sequelize.transaction(async (t) => {
        await h.engine.sequelize.query('select 1', { type: 'SELECT' as never });
        expect(cls().get('transaction')).toBe(t);
      });
    });
  });

  it('custom logging with benchmarking has correct CLS context', async () => {
    // the logger runs in the async context of the statement it logs; the session's BEGIN, which
    // travels with the first statement, is logged on its own (echo), never as "BEGIN; select …"
    const echoed: string[] = [];
    const calls: Array<{ line: string; session: number | undefined }> = [];
    let Local!: ReturnType<typeof sessionmaker>;
    const engine = createEngine(h.db.url, {
      pool: { max: 2 },
      echo: (sql) => echoed.push(sql),
      sequelize: { benchmark: true, logging: (line: string) => calls.push({ line, session: Local.currentOrUndefined()?.id }) },
    });
    h.engines.push(engine);
    Local = sessionmaker(engine);
    let first!: Session;
    let second!: Session;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const one = Local.begin(async (s) => {
      first = s;
      await gate;
      await engine.sequelize.query('select 1;');
    });
    await Local.begin(async (s) => {
      second = s;
      await engine.sequelize.query('select 2;');
    });
    release();
    await one;
    expect(calls).toHaveLength(2);
    expect(calls[0]!.line).toMatch(/^Executed \([^)]+\): select 2;/);
    expect(calls[0]!.session).toBe(second.id);
    expect(calls[1]!.line).toMatch(/^Executed \([^)]+\): select 1;/);
    expect(calls[1]!.session).toBe(first.id);
    expect(calls.some((c) => /BEGIN/.test(c.line))).toBe(false);
    expect(echoed.filter((sql) => sql === 'BEGIN')).toHaveLength(2);
  });
});

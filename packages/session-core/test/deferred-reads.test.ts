import fc from 'fast-check';
import { Op, QueryTypes, Sequelize } from 'sequelize';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CommitError, ConfigError, TransactionAbortedError, createEngine, sessionmaker, type Engine, type SessionFactory } from '../src/index.js';
import { defineModels, type Models } from './models.js';
import { useDatabase } from './support.js';

const h = useDatabase();
let engine: Engine;
let Deferred: SessionFactory;
let Default: SessionFactory;
let m: Models;
const sent: string[] = [];

beforeAll(async () => {
  engine = createEngine(h.db.url, { pool: { max: 1, acquireTimeoutMs: 3000 }, echo: (sql) => sent.push(sql.replace(/^Executing \([^)]*\): /, '')) });
  h.engines.push(engine);
  Deferred = sessionmaker(engine, { deferredReads: true, isolationLevel: 'READ COMMITTED' });
  Default = sessionmaker(engine, { isolationLevel: 'READ COMMITTED' });
  m = await defineModels(engine);
  await engine.autocommit(async () => {
    const tolkien = await m.Author.create({ name: 'Tolkien' });
    await m.Book.create({ title: 'The Hobbit', copies: 3, AuthorId: tolkien.get('id') });
    await engine.sequelize.query('CREATE SEQUENCE IF NOT EXISTS deferred_seq');
  });
});

beforeEach(() => {
  sent.length = 0;
});

const begins = () => sent.filter((sql) => /^BEGIN/.test(sql));
const commits = () => sent.filter((sql) => /^COMMIT/.test(sql));

describe('deferredReads: configuration', () => {
  it('needs an explicit READ COMMITTED and refuses settings, naming the option', () => {
    expect(() => sessionmaker(engine, { deferredReads: true })).toThrow(ConfigError);
    expect(() => sessionmaker(engine, { deferredReads: true })).toThrow(/deferredReads.*READ COMMITTED.*server's default/);
    expect(() => sessionmaker(engine, { deferredReads: true, isolationLevel: 'REPEATABLE READ' })).toThrow(/deferredReads.*"REPEATABLE READ"/);
    expect(() => sessionmaker(engine, { deferredReads: true, isolationLevel: 'READ COMMITTED', settings: { 'app.tenant': '1' } })).toThrow(/deferredReads.*settings \(app\.tenant\)/);
    // per session too; deferredReads: false is the way out
    expect(() => Deferred({ settings: { 'app.tenant': '1' } })).toThrow(ConfigError);
    expect(Deferred({ settings: { 'app.tenant': '1' }, deferredReads: false }).options.deferredReads).toBe(false);
    expect(() => sessionmaker(engine, { deferredReads: 'yes' as unknown as boolean, isolationLevel: 'READ COMMITTED' })).toThrow(/deferredReads.*boolean/);
    expect(Default().options.deferredReads).toBe(false);
  });
});

describe('deferredReads: leading pure reads run before BEGIN', () => {
  it('a session that only reads sends no BEGIN and no COMMIT: one round trip per read, and it counts as committed', async () => {
    const before = engine.stats().sessions;
    const found = await Deferred.begin(async () => {
      const author = await m.Author.findOne({ where: { name: 'Tolkien' }, include: [m.Book] });
      const again = await m.Author.findByPk(author!.get('id') as number);
      return { author: author!.get('name'), books: (author!.get('Books') as unknown[]).length, again: again!.get('name') };
    });
    expect(found).toEqual({ author: 'Tolkien', books: 1, again: 'Tolkien' });
    expect(begins()).toEqual([]);
    expect(commits()).toEqual([]);
    expect(sent.filter((sql) => /^SELECT/.test(sql))).toHaveLength(2);
    const after = engine.stats().sessions;
    expect(after.opened - before.opened).toBe(1);
    expect(after.committed - before.committed).toBe(1);
  });

  it('the first statement that is not a pure read begins, on the same connection; reads after it are inside the transaction', async () => {
    const seen = await Deferred.begin(async (db) => {
      const pidBefore = await m.Author.findAll({ attributes: ['id'], where: { name: { [Op.like]: 'Tol%' } } }).then(() => db.heldConnection);
      expect(db.inTransaction).toBe(false);
      expect(db.state).toBe('idle');
      await m.Author.create({ name: 'Le Guin' });
      expect(db.inTransaction).toBe(true);
      expect(db.state).toBe('active');
      const count = await m.Author.count(); // sees the uncommitted row: same transaction
      const [rows] = (await engine.sequelize.query('SELECT 1 AS one')) as [unknown[], unknown];
      return { same: pidBefore === db.heldConnection, count, rows };
    });
    expect(seen.same).toBe(true);
    expect(seen.count).toBe(2);
    expect(begins()).toHaveLength(1);
    const beginAt = sent.findIndex((sql) => /^BEGIN/.test(sql));
    expect(sent[beginAt + 1]).toMatch(/^INSERT INTO "Authors"/);
    expect(commits()).toHaveLength(1);
    await engine.autocommit(() => m.Author.destroy({ where: { name: 'Le Guin' } }));
  });

  it.each([
    ['lock: true', () => m.Book.findAll({ lock: true })],
    ['a raw SELECT (it can call volatile functions)', () => engine.sequelize.query("SELECT nextval('deferred_seq') AS n", { type: QueryTypes.SELECT })],
    ['fn() in attributes', () => m.Book.findAll({ attributes: [[Sequelize.fn('now'), 'at']] })],
    ['literal() in where', () => m.Book.findAll({ where: Sequelize.literal("nextval('deferred_seq') > 0") })],
    ['where(fn(), …)', () => m.Book.findAll({ where: Sequelize.where(Sequelize.fn('lower', Sequelize.col('title')), 'the hobbit') })],
    ['literal() inside an operator', () => m.Book.findAll({ where: { copies: { [Op.gt]: Sequelize.literal('0') } } })],
    ['fn() in an include', () => m.Author.findAll({ include: [{ model: m.Book, attributes: [[Sequelize.fn('random'), 'r']] }] })],
    ['count() (an aggregate)', () => m.Book.count()],
    ['findOrCreate', () => m.Author.findOrCreate({ where: { name: 'Tolkien' } })],
  ])('%s begins', async (_name, statement) => {
    await Deferred.begin(async () => {
      await statement();
    });
    expect(begins()).toHaveLength(1);
    expect(sent.findIndex((sql) => /^BEGIN/.test(sql))).toBe(0);
  });

  it('column references, operators, dates and order by a model stay pure', async () => {
    await Deferred.begin(async () => {
      await m.Book.findAll({
        where: { [Op.and]: [{ copies: { [Op.gte]: 0 } }, { title: { [Op.ne]: Sequelize.col('title') } }], id: { [Op.in]: [1, 2, 3] } },
        order: [[m.Author, 'name', 'ASC']],
        include: [{ model: m.Author, where: { name: { [Op.notIn]: ['x'] } } }],
      });
      await m.Book.findAll({ where: { title: { [Op.ne]: new Date(0).toISOString() } }, limit: 1, offset: 0 });
    });
    expect(begins()).toEqual([]);
  });
});

describe('deferredReads: failures', () => {
  it('a read the server refuses fails the session as it would inside the transaction (rule 7): later statements and COMMIT refuse', async () => {
    const before = engine.stats().sessions;
    const outcome = Deferred.begin(async () => {
      await expect(m.Book.findAll({ where: { copies: 'not a number' } })).rejects.toThrow(/invalid input syntax/);
      await expect(m.Author.create({ name: 'never' })).rejects.toBeInstanceOf(TransactionAbortedError);
    });
    await expect(outcome).rejects.toBeInstanceOf(CommitError);
    expect(engine.stats().sessions.rolledBack - before.rolledBack).toBe(1);
    expect(await engine.autocommit(() => m.Author.count({ where: { name: 'never' } }))).toBe(0);
    // the connection came back clean and serves the next session
    await expect(Deferred.begin(() => m.Author.findOne({ where: { name: 'Tolkien' } }))).resolves.toBeTruthy();
  });

  it('rollback() after a failed deferred read makes the session usable again', async () => {
    const session = Deferred();
    await session.run(async () => {
      await expect(m.Book.findAll({ where: { copies: 'nan' } })).rejects.toThrow();
      expect(session.state).toBe('failed');
      await session.rollback();
      expect(session.state).toBe('idle');
      await expect(m.Book.findAll()).resolves.toHaveLength(1);
    });
    await session.close();
  });

  it('a failed autocommit statement of the handler (transaction: null) does not poison the session', async () => {
    await Deferred.begin(async (db) => {
      await expect(engine.sequelize.query('SELECT 1/0', { transaction: null })).rejects.toThrow(/division by zero/);
      await m.Book.findAll();
      expect(db.state).toBe('idle');
    });
  });
});

describe('deferredReads: the connection is held, as in a transaction', () => {
  it('concurrent reads and a write of one session share its one connection (pool max 1: no deadlock), hold time and stats stay right', async () => {
    const session = Deferred({ leakWarningMs: 50 });
    const leaks: number[] = [];
    const onLeak = ({ heldMs }: { heldMs: number }) => leaks.push(heldMs);
    Deferred.on('leak', onLeak);
    try {
      await session.run(async () => {
        const [a, b] = await Promise.all([m.Book.findAll(), m.Author.findAll()]);
        expect(a).toHaveLength(1);
        expect(b.length).toBeGreaterThan(0);
        expect(engine.stats().pool.inUse).toBe(1);
        expect(engine.stats().sessions.open).toBeGreaterThanOrEqual(1);
        await new Promise((resolve) => setTimeout(resolve, 80));
        await Promise.all([m.Book.findAll(), m.Book.increment('copies', { where: {} }), m.Book.findAll()]);
      });
      await session.rollback();
    } finally {
      Deferred.off('leak', onLeak);
      await session.close();
    }
    expect(leaks).toHaveLength(1);
    expect(engine.stats().pool.inUse).toBe(0);
    expect(await engine.autocommit(() => m.Book.sum('copies'))).toBe(3); // the increment rolled back
  });
});

/**
 * Equivalence under READ COMMITTED, generated: the same program of reads and writes gives the
 * same results and the same rows in the default mode and with deferredReads, and with deferred
 * reads no statement but a pure finder SELECT runs before BEGIN.
 */
describe('deferredReads: equivalent to one transaction (property)', () => {
  type Step = { kind: 'findAll' | 'findByPk' | 'lock' | 'count' | 'raw' | 'create' | 'increment' | 'fail' | 'commit'; n: number };
  const step = fc.record({ kind: fc.constantFrom<Step['kind']>('findAll', 'findByPk', 'lock', 'count', 'raw', 'create', 'increment', 'fail', 'commit'), n: fc.integer({ min: 1, max: 5 }) });

  async function run(factory: SessionFactory, steps: Step[], tag: string): Promise<unknown[]> {
    const out: unknown[] = [];
    const session = factory();
    await session.run(async () => {
      for (const { kind, n } of steps) {
        try {
          switch (kind) {
            case 'findAll':
              out.push((await m.Book.findAll({ where: { copies: { [Op.gte]: n } }, order: [['id', 'ASC']] })).map((b) => [b.get('title'), b.get('copies')]));
              break;
            case 'findByPk':
              out.push((await m.Book.findByPk(n))?.get('copies') ?? null);
              break;
            case 'lock':
              out.push((await m.Book.findAll({ lock: true, where: { copies: { [Op.lt]: 100 } } })).length);
              break;
            case 'count':
              out.push(await m.Book.count());
              break;
            case 'raw':
              out.push(((await engine.sequelize.query('SELECT count(*)::int AS n FROM "Books"', { type: QueryTypes.SELECT })) as Array<{ n: number }>)[0]!.n);
              break;
            case 'create':
              await m.Book.create({ title: `${tag}-${n}`, copies: n });
              out.push('created');
              break;
            case 'increment':
              await m.Book.increment('copies', { by: n, where: { title: 'The Hobbit' } });
              out.push('incremented');
              break;
            case 'fail':
              await m.Book.findAll({ where: { copies: 'x' } });
              break;
            case 'commit':
              await session.commit();
              out.push('committed');
              break;
          }
        } catch (error) {
          out.push((error as Error).constructor.name);
        }
      }
    });
    try {
      await session.commit();
      out.push('final commit');
    } catch (error) {
      out.push((error as Error).constructor.name);
    }
    await session.close();
    out.push(
      ((await engine.autocommit(() => m.Book.findAll({ order: [['title', 'ASC']] }))) as Array<{ get(k: string): unknown }>).map((b) => [String(b.get('title')).replace(tag, 'T'), b.get('copies')]),
    );
    return out;
  }

  it('same results, same rows; before BEGIN only pure finder SELECTs', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 8 }), async (steps) => {
        const reset = () => engine.autocommit(() => Promise.all([m.Book.destroy({ where: { title: { [Op.ne]: 'The Hobbit' } } }), m.Book.update({ copies: 3 }, { where: { title: 'The Hobbit' } })]));
        await reset();
        const expected = await run(Default, steps, 'T');
        await reset();
        sent.length = 0;
        const actual = await run(Deferred, steps, 'T');
        expect(actual).toEqual(expected);
        // outside a transaction, the deferred run (and the oracle's own final read) sent only finder SELECTs without a lock
        let open = false;
        for (const sql of sent) {
          if (/^BEGIN/.test(sql)) open = true;
          else if (/^(COMMIT|ROLLBACK)/.test(sql)) open = false;
          else if (!open) {
            expect(sql).toMatch(/^SELECT .* FROM "Books" AS "Book"/);
            expect(sql).not.toMatch(/FOR UPDATE|count\(|nextval/);
          }
        }
        await reset();
      }),
      { numRuns: 40, seed: 20261201 },
    );
  });
});

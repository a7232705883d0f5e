import 'reflect-metadata';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEngine, InstanceExpiredError, sessionmaker, TransactionAbortedError, type Engine, type SessionFactory } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { DataTypes, QueryTypes } from 'sequelize';
import { Sequelize } from 'sequelize-typescript';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, expectTypeOf, it } from 'vitest';
import { createDatabase } from '../src/sequelize-typescript/database.js';
import { AuditEntry, Author, Book, models, notices } from '../src/sequelize-typescript/models.js';

/**
 * SPEC §2 (session lifecycle rules 1-10 and 13, two engines) through an engine built over
 * sequelize-typescript's `Sequelize` with decorator models registered by `addModels`.
 */

let db: TestDatabase;
let observer: pg.Client;
let engine: Engine<Sequelize>;
let SessionLocal: SessionFactory;
const sent: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase('sl_seqts');
  observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  ({ engine, SessionLocal } = createDatabase(db.url, { pool: { max: 4 }, echo: (sql) => sent.push(sql.replace(/^Executing \([^)]*\): /, '')) }));
  await engine.sequelize.sync();
  await observer.query('ALTER TABLE authors ADD CONSTRAINT authors_name_unique UNIQUE (name)');
});

beforeEach(async () => {
  await observer.query('TRUNCATE authors, books, audit_entries RESTART IDENTITY CASCADE');
  notices.length = 0;
  sent.length = 0;
});

afterEach(async () => {
  expect(engine.stats().pool.inUse, 'connections in use after the test').toBe(0);
  const { rows } = await observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()");
  expect(rows[0].n, 'backends idle in transaction').toBe(0);
});

afterAll(async () => {
  await engine?.dispose({ timeoutMs: 1000 });
  await observer?.end();
  await db?.drop();
});

async function backend(): Promise<{ pid: number; txid: string }> {
  const rows = await engine.sequelize.query<{ pid: number; txid: string }>('SELECT pg_backend_pid() AS pid, txid_current()::text AS txid', { type: QueryTypes.SELECT });
  return rows[0]!;
}

async function count(table: string): Promise<number> {
  const { rows } = await observer.query(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0].n;
}

describe('the engine over sequelize-typescript', () => {
  it('is a sequelize-typescript Sequelize with the decorator models registered by addModels', () => {
    expect(engine.sequelize).toBeInstanceOf(Sequelize);
    expect(typeof engine.sequelize.addModels).toBe('function');
    expectTypeOf(engine.sequelize).toEqualTypeOf<Sequelize>(); // sequelize-typescript's, so addModels and getRepository type-check
    expect(engine.sequelize.models).toMatchObject({ Author, Book, AuditEntry });
    expect(Book.sequelize).toBe(engine.sequelize);
    expect(Object.keys(Author.associations!)).toEqual(['books']);
    expect(Object.keys(Book.associations)).toEqual(['author']);
    // emitDecoratorMetadata reached vitest's transform: `@Column title: string` became VARCHAR(255)
    expect(Book.getAttributes().title!.type).toBeInstanceOf(DataTypes.STRING);
  });
});

describe('rule 1: lazy', () => {
  it('a session that never queries touches neither the pool nor the server', async () => {
    // no models on this one: a decorator model class belongs to the last instance that registered it
    const lazyEngine = createEngine(db.url, { sequelizeClass: Sequelize });
    const lazy = { engine: lazyEngine, SessionLocal: sessionmaker(lazyEngine) };
    const session = lazy.SessionLocal();
    await session.run(async () => {
      Book.build({ title: 'unsaved' });
    });
    await lazy.SessionLocal.begin(async () => undefined);
    await session.close();
    expect(lazy.engine.stats().pool.size).toBe(0);
    expect(lazy.engine.stats().sessions.opened).toBe(0);
    await lazy.engine.dispose();
  });

  it('the first statement carries BEGIN in its pipeline (one round trip), then COMMIT', async () => {
    await SessionLocal.begin(() => Author.findAll(), { readOnly: true });
    // logged apart as Sequelize would log them, sent in one round trip
    expect(sent).toHaveLength(3);
    expect(sent[0]).toBe('BEGIN READ ONLY');
    expect(sent[1]).toMatch(/^SELECT .* FROM "authors"/);
    expect(sent[2]).toBe('COMMIT');
  });
});

describe('rule 2: one connection, one transaction', () => {
  it('model methods, associations, hooks, findOrCreate, bulkCreate, raw queries and Promise.all share it', async () => {
    const seen = await SessionLocal.begin(async () => {
      const first = await backend();
      const author = await Author.create({ name: 'Le Guin', books: [{ title: ' The Dispossessed ' }] }, { include: [Book] });
      await Author.findOrCreate({ where: { name: 'Pratchett' } });
      await Book.bulkCreate([
        { title: 'Mort', authorId: author.id },
        { title: 'Lathe', authorId: author.id },
      ]);
      const parallel = await Promise.all([backend(), Author.findOne({ where: { name: 'Le Guin' }, include: [Book] }).then(() => backend()), Book.count().then(() => backend())]);
      return [first, ...parallel];
    });
    expect(new Set(seen.map((b) => b.pid)).size).toBe(1);
    expect(new Set(seen.map((b) => b.txid)).size).toBe(1);
    expect(await count('books')).toBe(3);
    // the @BeforeCreate hook ran; the @AfterCreate hook's audit row joined the transaction (create with include fires it, bulkCreate does not)
    const { rows } = await observer.query('SELECT title FROM books ORDER BY id');
    expect(rows[0].title).toBe('The Dispossessed');
    expect(await count('audit_entries')).toBe(1);
  });
});

describe('rule 3: implicit propagation', () => {
  it('queries with no transaction option join the current session; an explicit one wins', async () => {
    const other = SessionLocal();
    await SessionLocal.begin(async (session) => {
      expect(SessionLocal.current()).toBe(session);
      await Author.create({ name: 'in session' });
      await Author.create({ name: 'in other' }, { transaction: await other.transaction() });
      expect(await Author.count()).toBe(1); // the other session's row is not visible here
    });
    await other.rollback();
    await other.close();
    expect((await observer.query('SELECT name FROM authors')).rows).toEqual([{ name: 'in session' }]);
  });

  it('concurrent sessions interleaving timers never see each other', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        SessionLocal.begin(async (session) => {
          await sleep(i % 5);
          const author = await Author.create({ name: `writer ${i}` });
          await sleep(i % 3);
          const found = await Author.findAll();
          // its own uncommitted row is visible to it (others' only once they committed)
          return SessionLocal.current() === session && found.some((a) => a.id === author.id);
        }),
      ),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(await count('authors')).toBe(40);
  });

  it('a nested sequelize.transaction(cb) is a SAVEPOINT on the same backend', async () => {
    await SessionLocal.begin(async () => {
      const { pid } = await backend();
      await Author.create({ name: 'outer' });
      await expect(
        engine.sequelize.transaction(async () => {
          expect((await backend()).pid).toBe(pid);
          await Author.create({ name: 'inner undone' });
          throw new Error('undo the savepoint');
        }),
      ).rejects.toThrow('undo the savepoint');
      await engine.sequelize.transaction(() => Author.create({ name: 'inner kept' }));
      expect(engine.stats().pool.inUse).toBe(1);
    });
    expect((await observer.query('SELECT name FROM authors ORDER BY name')).rows.map((r) => r.name)).toEqual(['inner kept', 'outer']);
    expect(sent.some((sql) => /^SAVEPOINT/.test(sql))).toBe(true);
  });
});

describe('rules 4-5: commit, rollback and after-commit hooks', () => {
  it('Sequelize afterCommit callbacks queued by a decorator hook and session.afterCommit run after COMMIT, in order', async () => {
    const order: string[] = [];
    await SessionLocal.begin(async (session) => {
      const author = await Author.create({ name: 'Jemisin' });
      await Book.create({ title: 'The Fifth Season', authorId: author.id });
      session.afterCommit(async () => {
        order.push(`session hook sees ${await count('books')} book`);
      });
      expect(notices).toEqual([]);
      expect(await count('books')).toBe(0); // not committed yet
    });
    expect(notices).toEqual(['published The Fifth Season']);
    expect(order).toEqual(['session hook sees 1 book']);
    expect(await count('audit_entries')).toBe(1);
  });

  it('a rollback undoes the rows and the hook-written audit rows, and runs no after-commit hook', async () => {
    const session = SessionLocal();
    const rolledBack: string[] = [];
    await session.run(async () => {
      const author = await Author.create({ name: 'Banks' });
      await Book.create({ title: 'Excession', authorId: author.id });
      session.afterRollback(() => void rolledBack.push('afterRollback'));
      await session.rollback();
      // usable again: the next statement begins a new transaction
      await Author.create({ name: 'after rollback' });
      await session.commit();
    });
    await session.close();
    expect(notices).toEqual([]);
    expect(rolledBack).toEqual(['afterRollback']);
    expect((await observer.query('SELECT name FROM authors')).rows).toEqual([{ name: 'after rollback' }]);
    expect(await count('audit_entries')).toBe(0);
  });
});

describe('rules 6-9', () => {
  it('rule 7: after a failed statement, later ones fail naming it, until rollback', async () => {
    const session = SessionLocal();
    await session.run(async () => {
      await Author.create({ name: 'dup' });
      const first = await Author.create({ name: 'dup' }).catch((e: unknown) => e);
      expect(first).toBeInstanceOf(Error);
      const later = await Author.count().catch((e: unknown) => e);
      expect(later).toBeInstanceOf(TransactionAbortedError);
      expect((later as TransactionAbortedError).cause).toBe(first);
      await session.rollback();
      expect(await Author.count()).toBe(0);
    });
    await session.close();
    await expect(async () => session.run(() => Author.count())).rejects.toMatchObject({ code: 'SESSION_CLOSED' }); // rule 6
  });

  it('rule 8: beginNested rolls back to its savepoint on throw, the outer transaction survives', async () => {
    await SessionLocal.begin(async (session) => {
      await Author.create({ name: 'kept' });
      await expect(
        session.beginNested(async () => {
          await Author.create({ name: 'nested' });
          await Author.create({ name: 'kept' });
        }),
      ).rejects.toThrow();
      expect(session.state).toBe('active');
    });
    expect((await observer.query('SELECT name FROM authors')).rows).toEqual([{ name: 'kept' }]);
  });

  it('rule 9: expireOnCommit expires decorator-model instances; refresh reloads them', async () => {
    const Expiring = sessionmaker(engine, { expireOnCommit: true });
    const session = Expiring();
    const author = await session.run(async () => {
      const created = await Author.create({ name: 'Wolfe' });
      await session.commit();
      return created;
    });
    expect(() => author.name).toThrow(InstanceExpiredError);
    await session.refresh(author);
    expect(author.name).toBe('Wolfe');
    await session.close();
  });

  it('rule 10: settings are transaction-local and never reach the next session', async () => {
    const setting = async () => (await engine.sequelize.query<{ v: string }>("SELECT current_setting('app.tenant_id', true) AS v", { type: QueryTypes.SELECT }))[0]!.v;
    expect(await SessionLocal.begin(setting, { settings: { 'app.tenant_id': '42' } })).toBe('42');
    expect(await SessionLocal.begin(setting)).not.toBe('42');
  });
});

describe('rule 13 and secrets', () => {
  it('a connection that ran a session-level SET is destroyed, not handed to the next session', async () => {
    const singleEngine = createEngine(db.url, { sequelizeClass: Sequelize, pool: { max: 1 } });
    const single = { engine: singleEngine, sequelize: singleEngine.sequelize, SessionLocal: sessionmaker(singleEngine) };
    const first = await single.SessionLocal.begin(async () => {
      await single.sequelize.query("SET work_mem = '7MB'");
      return (await single.sequelize.query<{ pid: number }>('SELECT pg_backend_pid() AS pid', { type: QueryTypes.SELECT }))[0]!.pid;
    });
    const next = await single.SessionLocal.begin(
      async () => (await single.sequelize.query<{ pid: number; wm: string }>("SELECT pg_backend_pid() AS pid, current_setting('work_mem') AS wm", { type: QueryTypes.SELECT }))[0]!,
    );
    expect(next.pid).not.toBe(first);
    expect(next.wm).not.toBe('7MB');
    await single.engine.dispose();
  });

  it('the password appears in no URL, error or echo line', async () => {
    const lines: string[] = [];
    const broken = createEngine('postgres://app:hunter2-secret@127.0.0.1:1/app', { sequelizeClass: Sequelize, echo: (sql) => lines.push(sql), pool: { acquireTimeoutMs: 2000 } });
    expect(broken.url).toBe('postgres://app:***@127.0.0.1:1/app');
    const error = await sessionmaker(broken)
      .begin(() => broken.sequelize.query('SELECT 1'))
      .then(
        () => undefined,
        (e: unknown) => e as Error,
      );
    expect(error).toBeInstanceOf(Error);
    expect(`${error!.message}\n${error!.stack}\n${JSON.stringify(error)}\n${lines.join('\n')}`).not.toContain('hunter2-secret');
    await broken.dispose();
  });
});

describe('two engines', () => {
  it('two sequelize-typescript engines (repositoryMode) never see each other', async () => {
    const second = createEngine(db.url, { sequelizeClass: Sequelize, sequelize: { repositoryMode: true, models } });
    const SecondLocal = sessionmaker(second);
    const Authors = second.sequelize.getRepository(Author);
    await SessionLocal.begin(async (mine) => {
      await Author.create({ name: 'first engine' });
      const seen = await SecondLocal.begin(async (theirs) => {
        expect(SessionLocal.current()).toBe(mine);
        expect(SecondLocal.current()).toBe(theirs);
        await Authors.create({ name: 'second engine' });
        return (await Authors.findAll()).map((a) => a.name);
      });
      expect(seen).toEqual(['second engine']); // the first engine's row is uncommitted, in another transaction
      expect(SecondLocal.currentOrUndefined()).toBeUndefined();
    });
    expect(await count('authors')).toBe(2);
    await second.dispose();
  });
});

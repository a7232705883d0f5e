import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { CommitError } from '../src/index.js';
import { transactionalFactory, type TransactionalFactory } from '../src/testing/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();
let TestSession: TransactionalFactory;

beforeAll(async () => {
  await h.engine.autocommit(() =>
    h.engine.sequelize.query(`
      CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL);
      CREATE TABLE note_refs (id serial PRIMARY KEY, note_id int NOT NULL REFERENCES notes(id) DEFERRABLE INITIALLY DEFERRED);`),
  );
  TestSession = transactionalFactory(h.SessionLocal);
});
afterAll(async () => {
  await TestSession.close();
});

const bodies = async () => {
  const [rows] = (await h.engine.sequelize.query('SELECT body FROM notes ORDER BY id')) as [Array<{ body: string }>, unknown];
  return rows.map((r) => r.body);
};

describe('transactionalFactory', () => {
  it('commits become visible to later sessions of the factory, never to the database, and reset() undoes them', async () => {
    const hooks: string[] = [];
    await TestSession.begin(async (db) => {
      await h.engine.sequelize.query("INSERT INTO notes (body) VALUES ('one')");
      db.afterCommit(() => hooks.push('committed one'));
    });
    await TestSession.begin(async () => {
      await h.engine.sequelize.query("INSERT INTO notes (body) VALUES ('two')");
      throw new Error('rolled back');
    }).catch(() => undefined);
    expect(hooks).toEqual(['committed one']);
    expect(await TestSession.begin(() => bodies())).toEqual(['one']);
    const { rows } = await h.observer.query('SELECT count(*)::int AS n FROM notes');
    expect(rows[0].n).toBe(0);
    expect(TestSession.current).toBeTypeOf('function');
    await TestSession.reset();
    expect(await TestSession.begin(() => bodies())).toEqual([]);
    await TestSession.reset();
  });

  it("checks deferred constraints at the app's commit, as a real COMMIT would", async () => {
    const error = await TestSession.begin(() => h.engine.sequelize.query('INSERT INTO note_refs (note_id) VALUES (999)')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CommitError);
    await TestSession.begin(async () => {
      await h.engine.sequelize.query("INSERT INTO notes (id, body) VALUES (5, 'five')");
      await h.engine.sequelize.query('INSERT INTO note_refs (note_id) VALUES (5)');
    });
    expect(await TestSession.begin(() => bodies())).toEqual(['five']);
    await TestSession.reset();
  });

  it('all of its sessions run on the one outer connection', async () => {
    const pids = new Set<number>();
    for (let i = 0; i < 3; i++) {
      await TestSession.begin(async () => {
        const [rows] = (await h.engine.sequelize.query('SELECT pg_backend_pid() AS pid')) as [Array<{ pid: number }>, unknown];
        pids.add(rows[0]!.pid);
      });
    }
    expect(pids.size).toBe(1);
    await TestSession.reset();
  });
});

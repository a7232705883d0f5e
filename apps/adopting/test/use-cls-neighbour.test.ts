import 'reflect-metadata';
import { createEngine, sessionmaker, type Engine, type SessionFactory } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { createNamespace } from 'cls-hooked';
import pg from 'pg';
import { QueryTypes, Sequelize } from 'sequelize';
import { Sequelize as TypescriptSequelize } from 'sequelize-typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * An engine next to an unrelated, app-wide instance that uses Sequelize's own CLS
 * (`Sequelize.useCLS(namespace)`, the cls-hooked recipe of the Sequelize 6 manual). That
 * namespace is a process-global static of the `Sequelize` class, so the engine's subclass must
 * shadow it: neither side may ever join the other's transaction.
 */

const namespace = createNamespace('legacy-app');
Sequelize.useCLS(namespace);

let db: TestDatabase;
let observer: pg.Client;
let legacy: Sequelize;

beforeAll(async () => {
  db = await createTestDatabase('sl_usecls');
  observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  await observer.query('CREATE TABLE marks (label text NOT NULL, origin text NOT NULL)');
  legacy = new Sequelize(db.url, { dialect: 'postgres', logging: false });
});

afterAll(async () => {
  await legacy?.close();
  await observer?.end();
  await db?.drop();
});

async function labels(): Promise<string[]> {
  const { rows } = await observer.query('SELECT label FROM marks ORDER BY label');
  return rows.map((r) => r.label);
}

async function pid(sequelize: Sequelize): Promise<number> {
  const rows = await sequelize.query<{ pid: number }>('SELECT pg_backend_pid() AS pid', { type: QueryTypes.SELECT });
  return rows[0]!.pid;
}

const insert = (sequelize: Sequelize, label: string, origin: string) => sequelize.query('INSERT INTO marks (label, origin) VALUES ($1, $2)', { bind: [label, origin] });

describe.each([
  ['sequelize', Sequelize],
  ['sequelize-typescript', TypescriptSequelize],
] as const)('an engine over %s next to an instance using Sequelize.useCLS(cls-hooked)', (name, sequelizeClass) => {
  let engine: Engine;
  let SessionLocal: SessionFactory;

  beforeAll(async () => {
    await observer.query('TRUNCATE marks');
    engine = createEngine(db.url, { sequelizeClass, pool: { max: 3 } });
    SessionLocal = sessionmaker(engine);
  });

  afterAll(() => engine?.dispose({ timeoutMs: 1000 }));

  it('the engine class shadows the namespace set on the base class', () => {
    expect((Sequelize as unknown as { _cls: unknown })._cls).toBe(namespace);
    expect((engine.sequelize.constructor as unknown as { _cls: unknown })._cls).not.toBe(namespace);
    expect(engine.sequelize).toBeInstanceOf(sequelizeClass);
  });

  it('an engine statement outside any session, inside the neighbour CLS transaction, does not join it', async () => {
    await expect(
      legacy.transaction(async () => {
        await insert(legacy, `${name} legacy rolled back`, 'legacy');
        const legacyPid = await pid(legacy); // joins the CLS transaction
        expect(namespace.get('transaction')).toBeDefined();
        await insert(engine.sequelize, `${name} engine autocommit`, 'engine');
        expect(await pid(engine.sequelize)).not.toBe(legacyPid);
        throw new Error('roll the legacy transaction back');
      }),
    ).rejects.toThrow('roll the legacy transaction back');
    expect(await labels()).toContain(`${name} engine autocommit`);
    expect(await labels()).not.toContain(`${name} legacy rolled back`);
  });

  it('an engine session inside the neighbour CLS transaction keeps its own connection and outcome', async () => {
    await legacy.transaction(async () => {
      const legacyPid = await pid(legacy);
      await expect(
        SessionLocal.begin(async () => {
          await insert(engine.sequelize, `${name} engine session rolled back`, 'engine');
          expect(await pid(engine.sequelize)).not.toBe(legacyPid);
          // the neighbour still sees its own transaction inside the engine's session
          await insert(legacy, `${name} legacy committed`, 'legacy');
          expect(await pid(legacy)).toBe(legacyPid);
          throw new Error('roll the engine session back');
        }),
      ).rejects.toThrow('roll the engine session back');
    });
    const seen = await labels();
    expect(seen).toContain(`${name} legacy committed`);
    expect(seen).not.toContain(`${name} engine session rolled back`);
  });

  it("a neighbour CLS transaction opened inside an engine session is not the session's, and vice versa", async () => {
    await SessionLocal.begin(async (session) => {
      const sessionPid = await pid(engine.sequelize);
      await expect(
        legacy.transaction(async () => {
          await insert(legacy, `${name} legacy nested rolled back`, 'legacy');
          expect(await pid(legacy)).not.toBe(sessionPid);
          // the engine still joins its own session from inside the neighbour's CLS context
          await insert(engine.sequelize, `${name} engine session committed`, 'engine');
          expect(await pid(engine.sequelize)).toBe(sessionPid);
          expect(SessionLocal.current()).toBe(session);
          throw new Error('roll the legacy transaction back');
        }),
      ).rejects.toThrow('roll the legacy transaction back');
    });
    const seen = await labels();
    expect(seen).toContain(`${name} engine session committed`);
    expect(seen).not.toContain(`${name} legacy nested rolled back`);
  });

  it("engine.sequelize.transaction(cb) outside a session is independent of the neighbour's", async () => {
    await expect(
      legacy.transaction(async () => {
        await engine.sequelize.transaction(async () => {
          await insert(engine.sequelize, `${name} engine managed committed`, 'engine');
        });
        throw new Error('roll the legacy transaction back');
      }),
    ).rejects.toThrow('roll the legacy transaction back');
    expect(await labels()).toContain(`${name} engine managed committed`);
    expect(engine.stats().pool.inUse).toBe(0);
  });
});

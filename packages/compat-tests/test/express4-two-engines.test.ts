// The adapter's two-engine tests (packages/adapter-express/test/two-engines.test.ts) on Express 4,
// with next(err)-style handlers (Express 4 ignores the promise an async handler returns).
import type { AddressInfo } from 'node:net';
import express, { type RequestHandler } from 'express4';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '@sessionlocal/adapter-express';

let db: TestDatabase;
let first: Engine;
let second: Engine;

beforeAll(async () => {
  db = await createTestDatabase();
  first = createEngine(db.url, { pool: { max: 2 } });
  second = createEngine(db.url, { pool: { max: 2 } });
  await first.autocommit(() => first.sequelize.query('CREATE TABLE written (engine text)'));
});

afterAll(async () => {
  await first?.dispose();
  await second?.dispose();
  await db?.drop();
});

it('two sessionLocal middlewares (two engines) chain: both commit before the response, each in its own session', async () => {
  const First = sessionmaker(first);
  const Second = sessionmaker(second);
  const app = express();
  app.use(sessionLocal({ factory: First }) as unknown as RequestHandler, sessionLocal({ factory: Second }) as unknown as RequestHandler);
  app.post('/both', (_req, res, next) => {
    (async () => {
      await first.sequelize.query(`INSERT INTO written VALUES ('first')`);
      await second.sequelize.query(`INSERT INTO written VALUES ('second')`);
      const [[a], [b]] = await Promise.all([first.sequelize.query('SELECT pg_backend_pid() AS pid'), second.sequelize.query('SELECT pg_backend_pid() AS pid')]);
      res.status(201).json({ distinct: (a as { pid: number }[])[0]!.pid !== (b as { pid: number }[])[0]!.pid });
    })().catch(next);
  });
  app.get('/none', (_req, res) => {
    res.json({ ok: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const both = await fetch(`${base}/both`, { method: 'POST' });
    expect(both.status).toBe(201);
    expect(await both.json()).toEqual({ distinct: true });
    const none = await fetch(`${base}/none`);
    expect(await none.json()).toEqual({ ok: true });
    const [rows] = await first.autocommit(() => first.sequelize.query('SELECT engine FROM written ORDER BY engine'));
    expect(rows).toEqual([{ engine: 'first' }, { engine: 'second' }]);
    expect(first.stats().pool.inUse + second.stats().pool.inUse).toBe(0);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

it('the same sessionLocal middleware mounted twice (app and router) answers, commits once, releases everything', async () => {
  const First = sessionmaker(first);
  const db = sessionLocal({ factory: First }) as unknown as RequestHandler;
  const app = express();
  const router = express.Router();
  router.use(db);
  router.post('/twice', (req, res, next) => {
    first.sequelize
      .query(`INSERT INTO written VALUES ('twice')`)
      .then(() => res.status(201).json({ same: First.current() === req.db }))
      .catch(next);
  });
  app.use(db, router);
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const reply = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/twice`, { method: 'POST', signal: AbortSignal.timeout(5000) });
    expect(reply.status).toBe(201);
    expect(await reply.json()).toEqual({ same: true });
    const [rows] = await first.autocommit(() => first.sequelize.query(`SELECT count(*)::int AS n FROM written WHERE engine = 'twice'`));
    expect(rows).toEqual([{ n: 1 }]);
    expect(first.stats().pool.inUse).toBe(0);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

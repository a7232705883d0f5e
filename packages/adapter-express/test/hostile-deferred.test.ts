/**
 * Hostile: the Express adapter over a `deferredReads` factory (docs only: core README
 * "deferredReads", docs/semantics.md "Deferred reads (opt-in)", §3 and §6).
 */
import type { AddressInfo } from 'node:net';
import express from 'express';
import { DataTypes } from 'sequelize';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '../src/index.js';

let db: TestDatabase;
let engine: Engine;
let watcher: Engine;
/** Autocommit queries from a separate engine (observing). */
const observer = {
  query: async (sql: string) => {
    const [rows] = (await watcher.sequelize.query(sql)) as [Array<Record<string, unknown>>, unknown];
    return { rows, rowCount: rows.length };
  },
};
let server: ReturnType<express.Express['listen']>;
let base: string;
const DEFERRED = { deferredReads: true, isolationLevel: 'READ COMMITTED' } as const;

beforeAll(async () => {
  db = await createTestDatabase();
  engine = createEngine(db.url, { pool: { max: 1, acquireTimeoutMs: 2000 } });
  watcher = createEngine(db.url, { pool: { max: 1 } });
  await observer.query(`CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO items(name) VALUES ('a'), ('b')`);
  const Item = engine.sequelize.define('Item', { name: DataTypes.STRING }, { tableName: 'items', timestamps: false });
  const app = express();
  app.use(sessionLocal({ factory: sessionmaker(engine, DEFERRED) }));
  app.get('/read', async (_req, res) => {
    res.json({ n: (await Item.findAll()).length });
  });
  app.post('/read-write', async (req, res) => {
    await Item.findAll();
    await Item.create({ name: String(req.query.name) });
    res.status(201).json({ ok: true });
  });
  app.get('/swallowed', async (_req, res) => {
    // a leading read the server refuses, its error swallowed: the session is failed (rule 7), COMMIT must fail
    await Item.findAll({ where: { id: 'not-a-number' } }).catch(() => {});
    res.json({ ok: true });
  });
  app.get('/swallowed-then-write', async (_req, res) => {
    await Item.findAll({ where: { id: 'nope' } }).catch(() => {});
    await Item.create({ name: 'must-not-exist' }).catch(() => {});
    res.json({ ok: true });
  });
  const tenanted = express();
  tenanted.use(sessionLocal({ factory: sessionmaker(engine, DEFERRED), settings: () => ({ 'app.tenant_id': '42' }) }));
  tenanted.get('/t', async (_req, res) => {
    await Item.findAll();
    const [rows] = (await engine.sequelize.query(`SELECT current_setting('app.tenant_id', true) AS t`)) as [Array<{ t: string | null }>, unknown];
    res.json({ t: rows[0]!.t });
  });
  app.use('/tenanted', tenanted);
  // a middleware reads (deferred: no BEGIN yet, the connection held), then the route asks for its own options
  app.get(
    '/read-then-route',
    async (req, _res, next) => {
      await Item.findAll();
      next();
    },
    sessionLocal.route({ readOnly: () => true }),
    (_req, res) => {
      res.json({ swapped: true });
    },
  );
  app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: error.name, message: error.message });
  });
  app.use(sessionLocal.errors());
  app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    res.status(500).json({ error: err.constructor.name, message: err.message });
  });
  server = app.listen(0);
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise((r) => setTimeout(r, 50));
  expect(engine.stats().pool.inUse, 'connection back after the request').toBe(0);
  const { rows } = await observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'`);
  expect(rows[0]!.n).toBe(0);
});

afterAll(async () => {
  await new Promise<void>((r) => server?.close(() => r()));
  await engine?.dispose();
  await watcher?.dispose();
  await db?.drop();
});

it('a read-only request answers 200, counts one commit, releases the connection', async () => {
  const before = engine.stats().sessions;
  const r = await fetch(`${base}/read`);
  expect(r.status).toBe(200);
  expect(await r.json()).toEqual({ n: 2 });
  const after = engine.stats().sessions;
  expect(after.committed - before.committed).toBe(1);
});

it('read then write: 201 only when committed (the row is there)', async () => {
  const r = await fetch(`${base}/read-write?name=rw1`, { method: 'POST' });
  expect(r.status).toBe(201);
  expect((await observer.query(`SELECT 1 FROM items WHERE name = 'rw1'`)).rowCount).toBe(1);
});

it('a handler that swallows a refused leading read never answers 2xx (COMMIT fails: 500 commit_failed)', async () => {
  const r = await fetch(`${base}/swallowed`);
  const body = await r.text();
  expect(r.status, body).toBe(500);
});

it('a refused leading read, then a swallowed write: nothing is written, no 2xx', async () => {
  const r = await fetch(`${base}/swallowed-then-write`);
  expect(r.status).toBe(500);
  expect((await observer.query(`SELECT 1 FROM items WHERE name = 'must-not-exist'`)).rowCount).toBe(0);
});

it('adapter settings(req) on a deferred factory: the request runs in the default mode and its first read sees the settings', async () => {
  const r = await fetch(`${base}/tenanted/t`);
  const body = await r.text();
  expect(r.status, body).toBe(200);
  expect(JSON.parse(body)).toEqual({ t: '42' });
});

it("sessionLocal.route() after a middleware's deferred read is refused (the session is in use), never a silent second session", async () => {
  const r = await fetch(`${base}/read-then-route`);
  const body = (await r.json()) as { error?: string; message?: string };
  expect(r.status).toBe(500);
  expect(body.message).toMatch(/per-route session options must run before anything uses the request session/);
  expect(engine.stats().pool.inUse).toBe(0);
});

import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '../src/index.js';

let db: TestDatabase;
let engine: Engine;

beforeAll(async () => {
  db = await createTestDatabase();
  engine = createEngine(db.url, { pool: { max: 2 } });
  await engine.autocommit(() => engine.sequelize.query('CREATE TABLE written (label text)'));
});

afterAll(async () => {
  await engine?.dispose();
  await db?.drop();
});

it('sessionLocal.route() after a middleware that registered afterCommit keeps the hook: it runs once the route commits, never afterRollback', async () => {
  const SessionLocal = sessionmaker(engine);
  const ran: string[] = [];
  const app = express();
  app.use(sessionLocal({ factory: SessionLocal }));
  app.use((req, _res, next) => {
    req.db.afterCommit(() => void ran.push('afterCommit'));
    req.db.afterRollback(() => void ran.push('afterRollback'));
    next();
  });
  app.post('/write', sessionLocal.route({ commitWhen: (status) => status === 201 }), async (_req, res) => {
    await engine.sequelize.query(`INSERT INTO written VALUES ('route')`);
    res.status(201).json({ ok: true });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/write`, { method: 'POST' });
    expect(response.status).toBe(201);
    for (let i = 0; i < 50 && ran.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(ran).toEqual(['afterCommit']);
    const [rows] = await engine.autocommit(() => engine.sequelize.query('SELECT count(*)::int AS n FROM written'));
    expect((rows as Array<{ n: number }>)[0]!.n).toBe(1);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

import http from 'node:http';
import type { Engine } from '@sessionlocal/session-core';
import { listen, request, type ConformanceApp } from '@sessionlocal/session-core/conformance';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { Sequelize } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** A plain Sequelize app (app-wide instance, `Model.init(..., { sequelize })` files) after the one-line change. */

let db: TestDatabase;
let observer: pg.Client;
let engine: Engine;
let app: ConformanceApp;

beforeAll(async () => {
  db = await createTestDatabase('sl_plain');
  process.env.DATABASE_URL = db.url; // the app reads it when db.ts is first imported, as in production
  observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  ({ engine } = await import('../src/plain/db.js'));
  const { createApp } = await import('../src/plain/app.js'); // imports the model files
  await engine.sequelize.sync();
  app = await listen(http.createServer(createApp()));
});

afterAll(async () => {
  await app?.close();
  await engine?.dispose({ timeoutMs: 1000 });
  await observer?.end();
  await db?.drop();
});

describe('a plain Sequelize app on the engine', () => {
  it('keeps its instance type and options: the models are on engine.sequelize', async () => {
    const { sequelize } = await import('../src/plain/db.js');
    const { Order } = await import('../src/plain/models.js');
    expect(sequelize).toBeInstanceOf(Sequelize);
    expect(Order.sequelize).toBe(engine.sequelize);
    expect(Order.getAttributes().customer!.field).toBe('customer');
    expect((await observer.query("SELECT column_name FROM information_schema.columns WHERE table_name = 'order_lines' AND column_name = 'order_id'")).rowCount).toBe(1); // define: { underscored: true } passed through
  });

  it('a request that succeeds commits all its writes', async () => {
    const created = await request(app.url, '/orders', { method: 'POST', body: { customer: 'ada', lines: [{ sku: 'pen', quantity: 2 }] } });
    expect(created.status).toBe(201);
    const shown = await request(app.url, `/orders/${created.json.id}`);
    expect(shown.json).toEqual({ customer: 'ada', lines: ['2 x pen'] });
  });

  it('a request that fails half-way (validation error on the second line) leaves no order behind', async () => {
    const before = (await observer.query('SELECT count(*)::int AS n FROM orders')).rows[0].n;
    const failed = await request(app.url, '/orders', {
      method: 'POST',
      body: {
        customer: 'bob',
        lines: [
          { sku: 'ink', quantity: 1 },
          { sku: 'nib', quantity: 0 },
        ],
      },
    });
    expect(failed.status).toBe(500);
    expect((await observer.query('SELECT count(*)::int AS n FROM orders')).rows[0].n).toBe(before);
    expect((await observer.query("SELECT count(*)::int AS n FROM order_lines WHERE sku = 'ink'")).rows[0].n).toBe(0);
    expect(engine.stats().pool.inUse).toBe(0);
  });
});

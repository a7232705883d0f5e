import 'reflect-metadata';
import type { INestApplication } from '@nestjs/common';
import { getConnectionToken, getModelToken } from '@nestjs/sequelize';
import type { Engine, SessionFactory } from '@sessionlocal/session-core';
import { request } from '@sessionlocal/session-core/conformance';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import type { Sequelize } from 'sequelize-typescript';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createExpressApp, createFastifyApp } from '../src/nest/app.js';
import { published } from '../src/nest/library.js';
import { SESSION_LOCAL } from '../src/nest/session-local.module.js';
import { createDatabase } from '../src/sequelize-typescript/database.js';
import { Author } from '../src/sequelize-typescript/models.js';

/** A Nest app (controller -> DI-built service -> injected models) on both HTTP platforms, with the existing adapters. */

let db: TestDatabase;
let observer: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase('sl_nest');
  observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
});

afterAll(async () => {
  await observer?.end();
  await db?.drop();
});

const names = async () => (await observer.query('SELECT name FROM authors ORDER BY name')).rows.map((r) => r.name);
const count = async (table: string) => (await observer.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;

describe.each([
  ['express', createExpressApp],
  ['fastify', createFastifyApp],
] as const)('a Nest app on the %s platform', (_platform, createApp) => {
  let engine: Engine<Sequelize>;
  let SessionLocal: SessionFactory;
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    ({ engine, SessionLocal } = createDatabase(db.url, { pool: { max: 4 } }));
    await engine.sequelize.sync({ force: true });
    await observer.query('ALTER TABLE authors ADD CONSTRAINT authors_name_unique UNIQUE (name)');
    app = await createApp(SessionLocal);
    await app.listen(0, '127.0.0.1');
    url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
  });

  afterAll(async () => {
    await app?.close();
    expect(engine.isDisposed, 'SessionLocalModule disposes the engine on app.close()').toBe(true);
  });

  beforeEach(async () => {
    await observer.query('TRUNCATE authors, books, audit_entries RESTART IDENTITY CASCADE');
    published.length = 0;
  });

  it("Nest's container holds the engine's instance under @nestjs/sequelize's tokens, and the factory", () => {
    expect(app.get(getConnectionToken())).toBe(engine.sequelize);
    expect(app.get(getModelToken(Author))).toBe(Author);
    expect(app.get(SESSION_LOCAL)).toBe(SessionLocal);
  });

  it('a DI-built service reaches the request session with SessionLocal.current(); the request commits, then after-commit hooks run', async () => {
    const reply = await request(url, '/authors', { method: 'POST', body: { name: 'Le Guin', books: ['Tehanu'] } });
    expect(reply.status).toBe(201);
    expect(reply.json).toMatchObject({ sameSession: true });
    expect(await names()).toEqual(['Le Guin']);
    expect(await count('audit_entries')).toBe(1); // the @AfterCreate decorator hook joined the request transaction
    expect(published).toEqual(['author Le Guin']);
    const shown = await request(url, `/authors/${reply.json.id}`);
    expect(shown.status).toBe(200);
    expect(shown.json).toEqual({ name: 'Le Guin', books: ['Tehanu'] });
  });

  it('an HttpException after writing (409) rolls the request back and runs no after-commit hook', async () => {
    const reply = await request(url, '/authors', { method: 'POST', body: { name: 'Banks', books: ['Excession'], conflict: true } });
    expect(reply.status).toBe(409);
    expect(await names()).toEqual([]);
    expect(await count('books')).toBe(0);
    expect(published).toEqual([]);
  });

  it("a database error answered by Nest's exception filter (500) rolls the request back", async () => {
    expect((await request(url, '/authors', { method: 'POST', body: { name: 'Wolfe' } })).status).toBe(201);
    const reply = await request(url, '/authors', { method: 'POST', body: { name: 'Wolfe', books: ['never'] } });
    expect(reply.status).toBe(500);
    expect(await names()).toEqual(['Wolfe']);
    expect(await count('books')).toBe(0);
  });

  it('concurrent requests each get their own session', async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => request(url, '/authors', { method: 'POST', body: { name: `writer ${i}` } })));
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 201));
    expect(replies.every((r) => r.json.sameSession)).toBe(true);
    expect(new Set(replies.map((r) => r.json.session)).size).toBe(20);
    expect(await count('authors')).toBe(20);
    expect(engine.stats().pool.inUse).toBe(0);
  });

  it('a request that only reads gets 404 and releases its connection', async () => {
    expect((await request(url, '/authors/999')).status).toBe(404);
    expect(engine.stats().pool.inUse).toBe(0);
  });
});

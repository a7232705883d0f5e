import 'reflect-metadata';
import http from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal as expressSessionLocal } from '@sessionlocal/adapter-express';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { sessionLocal as koaSessionLocal } from '@sessionlocal/adapter-koa';
import type { Engine, SessionFactory } from '@sessionlocal/session-core';
import { listen, request, type ConformanceApp } from '@sessionlocal/session-core/conformance';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import pg from 'pg';
import type { Sequelize } from 'sequelize-typescript';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createDatabase } from '../src/sequelize-typescript/database.js';
import { Author, Book, notices } from '../src/sequelize-typescript/models.js';

/** The sequelize-typescript decorator models behind each adapter, over real HTTP. */

interface Body {
  name: string;
  books?: string[];
  fail?: boolean;
}

/** Framework-neutral handlers: no transaction option anywhere, the request session is implicit. */
const handlers = {
  async create(body: Body) {
    const author = await Author.create({ name: body.name });
    for (const title of body.books ?? []) await Book.create({ title, authorId: author.id });
    if (body.fail) throw new Error('failed after writing');
    return { status: 201, body: { id: author.id } };
  },
  async show(id: string) {
    const author = await Author.findByPk(id, { include: [Book] });
    return author ? { status: 200, body: { name: author.name, books: author.books!.map((b) => b.title) } } : { status: 404, body: {} };
  },
};

const frameworks: Record<string, (SessionLocal: SessionFactory) => Promise<ConformanceApp>> = {
  async express(SessionLocal) {
    const app = express().use(expressSessionLocal({ factory: SessionLocal }), express.json());
    app.post('/authors', async (req, res) => {
      const result = await handlers.create(req.body);
      res.status(result.status).json(result.body);
    });
    app.get('/authors/:id', async (req, res) => {
      const result = await handlers.show(req.params.id);
      res.status(result.status).json(result.body);
    });
    app.use((_error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => void res.status(500).json({ error: 'internal' }));
    return listen(http.createServer(app));
  },
  async koa(SessionLocal) {
    const router = new Router();
    router.post('/authors', async (ctx) => {
      const result = await handlers.create(ctx.request.body as Body);
      ctx.status = result.status;
      ctx.body = result.body;
    });
    router.get('/authors/:id', async (ctx) => {
      const result = await handlers.show(ctx.params.id!);
      ctx.status = result.status;
      ctx.body = result.body;
    });
    const app = new Koa();
    app.silent = true;
    app
      .use(koaSessionLocal({ factory: SessionLocal }))
      .use(bodyParser())
      .use(router.routes());
    return listen(http.createServer(app.callback()));
  },
  async fastify(SessionLocal) {
    const app = Fastify({ logger: false });
    await app.register(fastifySessionLocal, { factory: SessionLocal });
    app.post('/authors', async (request, reply) => {
      const result = await handlers.create(request.body as Body);
      return reply.code(result.status).send(result.body);
    });
    app.get<{ Params: { id: string } }>('/authors/:id', async (request, reply) => {
      const result = await handlers.show(request.params.id);
      return reply.code(result.status).send(result.body);
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, close: () => app.close() };
  },
};

let db: TestDatabase;
let observer: pg.Client;
let engine: Engine<Sequelize>;
let SessionLocal: SessionFactory;

beforeAll(async () => {
  db = await createTestDatabase('sl_seqts_http');
  observer = new pg.Client({ connectionString: db.url });
  await observer.connect();
  ({ engine, SessionLocal } = createDatabase(db.url, { pool: { max: 4 } }));
  await engine.sequelize.sync();
  await observer.query('ALTER TABLE authors ADD CONSTRAINT authors_name_unique UNIQUE (name)');
});

afterAll(async () => {
  await engine?.dispose({ timeoutMs: 1000 });
  await observer?.end();
  await db?.drop();
});

const names = async () => (await observer.query('SELECT name FROM authors ORDER BY name')).rows.map((r) => r.name);
const count = async (table: string) => (await observer.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n;

describe.each(Object.keys(frameworks))('sequelize-typescript models behind the %s adapter', (name) => {
  let app: ConformanceApp;

  beforeEach(async () => {
    await observer.query('TRUNCATE authors, books, audit_entries RESTART IDENTITY CASCADE');
    notices.length = 0;
    app = await frameworks[name]!(SessionLocal);
  });

  afterEach(async () => {
    await app.close();
    expect(engine.stats().pool.inUse).toBe(0);
  });

  it('a successful request commits the rows, the hook-written audit rows, then runs the after-commit hooks', async () => {
    const created = await request(app.url, '/authors', { method: 'POST', body: { name: 'Le Guin', books: [' Tehanu ', 'Lavinia'] } });
    expect(created.status).toBe(201);
    expect(await names()).toEqual(['Le Guin']);
    expect(await count('audit_entries')).toBe(2);
    expect(notices).toEqual(['published Tehanu', 'published Lavinia']);
    const shown = await request(app.url, `/authors/${(created.json as { id: number }).id}`);
    expect(shown.json).toEqual({ name: 'Le Guin', books: ['Tehanu', 'Lavinia'] });
  });

  it('a request whose handler throws after writing answers 500 and leaves nothing behind', async () => {
    const failed = await request(app.url, '/authors', { method: 'POST', body: { name: 'Banks', books: ['Excession'], fail: true } });
    expect(failed.status).toBe(500);
    expect(await names()).toEqual([]);
    expect(await count('books')).toBe(0);
    expect(await count('audit_entries')).toBe(0);
    expect(notices).toEqual([]);
  });

  it('a database error mid-request (unique violation) rolls the whole request back', async () => {
    expect((await request(app.url, '/authors', { method: 'POST', body: { name: 'Wolfe' } })).status).toBe(201);
    const duplicate = await request(app.url, '/authors', { method: 'POST', body: { name: 'Wolfe', books: ['never'] } });
    expect(duplicate.status).toBe(500);
    expect(await names()).toEqual(['Wolfe']);
    expect(await count('books')).toBe(0);
  });
});

import http2 from 'node:http2';
import Fastify from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { fastifySessionLocal } from '../src/index.js';

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

it('over HTTP/2 a request the client cancels (RST_STREAM) rolls back and releases its connection (§3 rule 4)', async () => {
  const SessionLocal = sessionmaker(engine);
  const app = Fastify({ http2: true });
  await app.register(fastifySessionLocal, { factory: SessionLocal });
  let aborted = false;
  let settled!: () => void;
  const handlerDone = new Promise<void>((resolve) => (settled = resolve));
  app.post('/slow', async (request, reply) => {
    try {
      await engine.sequelize.query(`INSERT INTO written VALUES ('cancelled')`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      aborted = request.db.signal.aborted;
      return reply.code(201).send({ ok: true });
    } finally {
      settled();
    }
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const client = http2.connect(`http://127.0.0.1:${port}`);
  try {
    for (let i = 0; i < 3; i++) {
      const stream = client.request({ ':method': 'POST', ':path': '/slow', 'content-type': 'application/json' });
      stream.on('error', () => undefined);
      stream.end('{}');
      await new Promise((resolve) => setTimeout(resolve, 100));
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
    await handlerDone;
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(aborted).toBe(true);
    const [rows] = await engine.autocommit(() => engine.sequelize.query(`SELECT count(*)::int AS n FROM written WHERE label = 'cancelled'`));
    expect((rows as Array<{ n: number }>)[0]!.n).toBe(0);
    expect(engine.stats().pool.inUse).toBe(0);
  } finally {
    client.close();
    await app.close();
  }
});

it('over HTTP/2 a failed COMMIT answers 500 (plain and hijacked replies), the process stays up (§3 rules 2, 8)', async () => {
  await engine.autocommit(() => engine.sequelize.query('CREATE TABLE IF NOT EXISTS deferred_h2 (k int, CONSTRAINT deferred_h2_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)'));
  const SessionLocal = sessionmaker(engine);
  const app = Fastify({ http2: true });
  await app.register(fastifySessionLocal, { factory: SessionLocal });
  app.post('/fails', async (_request, reply) => {
    await engine.sequelize.query('INSERT INTO deferred_h2 VALUES (1), (1)');
    return reply.code(201).send({ ok: true });
  });
  app.post('/fails-hijacked', async (_request, reply) => {
    await engine.sequelize.query('INSERT INTO deferred_h2 VALUES (2), (2)');
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.end('saved!');
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as { port: number };
  const client = http2.connect(`http://127.0.0.1:${port}`);
  const post = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const stream = client.request({ ':method': 'POST', ':path': path, 'content-type': 'application/json' });
      let status = 0;
      let body = '';
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk) => (body += chunk));
      stream.on('end', () => resolve({ status, body }));
      stream.on('error', reject);
      stream.end('{}');
    });
  try {
    for (const path of ['/fails', '/fails-hijacked']) {
      const reply = await post(path);
      expect(reply.status, path).toBe(500);
      expect(JSON.parse(reply.body).error, path).toBe('commit_failed');
    }
    expect(engine.stats().pool.inUse).toBe(0);
  } finally {
    client.close();
    await app.close();
  }
});

/**
 * Hostile review of the prototype response holder (commit 0f9bfab) through Fastify: hijacked
 * replies writing the raw response over HTTP/1 and HTTP/2 (`Http2ServerResponse.prototype`),
 * inject (light-my-request's own Response class: the instance fallback), two registrations,
 * a failed COMMIT, a late error after the answer (second `onSend`), and the read-your-writes
 * cookie next to the app's cookies, held (hijack) and not held.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { fastifySessionLocal } from '../src/index.js';

let db: TestDatabase;
let first: Engine;
let second: Engine;
let observer: Engine; // its own pool: reads what others committed
const apps: FastifyInstance[] = [];
let counter = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  // the primary as its own "replica": read-your-writes then asks COMMIT for its WAL position
  first = createEngine(db.url, { pool: { max: 4 }, replicas: [db.url], replicaOptions: { checkIntervalMs: 0 } });
  second = createEngine(db.url, { pool: { max: 4 }, replicas: [db.url], replicaOptions: { checkIntervalMs: 0 } });
  await first.autocommit(() => first.sequelize.query('CREATE TABLE marks (id text PRIMARY KEY, engine text)'));
  observer = createEngine(db.url, { pool: { max: 2 } });
});

afterAll(async () => {
  for (const app of apps) await app.close();
  await observer?.dispose();
  await first?.dispose();
  await second?.dispose();
  await db?.drop();
});

const visible = async (id: string) => {
  const [rows] = (await observer.autocommit(() => observer.sequelize.query('SELECT 1 FROM marks WHERE id = $1', { bind: [id] }))) as [unknown[], unknown];
  return rows.length === 1;
};

interface Answer {
  status: number;
  cookies: string[];
  headers: Record<string, unknown>;
  body: string;
  committedAtHead: boolean;
}

function get1(url: string, id: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false }, (response) => {
      const atHead = visible(id);
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on(
        'end',
        () => void atHead.then((committedAtHead) => resolve({ status: response.statusCode ?? 0, cookies: response.headers['set-cookie'] ?? [], headers: response.headers, body, committedAtHead })),
      );
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('timeout')));
  });
}

function get2(origin: string, path: string, id: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(origin);
    client.on('error', reject);
    const stream = client.request({ ':path': path });
    let atHead: Promise<boolean> = Promise.resolve(false);
    let headers: http2.IncomingHttpHeaders = {};
    stream.on('response', (h) => {
      headers = h;
      atHead = visible(id);
    });
    let body = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => (body += chunk));
    stream.on('error', reject);
    stream.on('end', () => {
      client.close();
      const cookie = headers['set-cookie'];
      void atHead.then((committedAtHead) =>
        resolve({ status: Number(headers[':status']), cookies: cookie === undefined ? [] : Array.isArray(cookie) ? cookie : [cookie], headers, body, committedAtHead }),
      );
    });
    stream.setTimeout(10_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
  });
}

const names = (cookies: string[]) => cookies.map((cookie) => cookie.slice(0, cookie.indexOf('='))).sort();

type Write = 'end' | 'write-end' | 'writeHead-end' | 'flushHeaders' | 'many';

/** A hijacked reply writing the raw response, after inserting a row (and maybe failing its COMMIT). */
function routes(app: FastifyInstance, engines: Engine[]): void {
  app.get<{ Params: { id: string; write: Write; fail: string; cookie: string } }>('/raw/:id/:write/:fail/:cookie', async (request, reply: FastifyReply) => {
    const { id, write, fail, cookie } = request.params;
    for (const [i, engine] of engines.entries()) await engine.sequelize.query('INSERT INTO marks VALUES ($1, $2)', { bind: [i === 0 ? id : `${id}-${i}`, String(i)] });
    if (fail === '1') await engines[engines.length - 1]!.sequelize.query('SELECT 1/0').catch(() => undefined);
    reply.hijack();
    const res = reply.raw;
    if (cookie === '1' && write !== 'writeHead-end') res.setHeader('set-cookie', ['app=1; Path=/']);
    res.setHeader('content-type', 'text/plain');
    if (write === 'writeHead-end') {
      res.writeHead(201, { 'content-type': 'text/plain', ...(cookie === '1' && { 'set-cookie': ['app=1; Path=/'] }) });
      res.end('ok');
    } else if (write === 'flushHeaders') {
      res.statusCode = 202;
      res.flushHeaders();
      res.end('ok');
    } else if (write === 'many') {
      for (let i = 0; i < 20; i++) res.write('x'.repeat(32 * 1024));
      res.end('ok');
    } else {
      if (write === 'write-end') res.write('o');
      res.end(write === 'write-end' ? 'k' : 'ok');
    }
  });
}

const expectedStatus = (write: Write) => (write === 'writeHead-end' ? 201 : write === 'flushHeaders' ? 202 : 200);
const expectedLength = (write: Write) => (write === 'many' ? 20 * 32 * 1024 + 2 : 2);

async function started(app: FastifyInstance): Promise<string> {
  apps.push(app);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

it('hijacked raw writes over HTTP/1 and HTTP/2, one or two registrations, read-your-writes next to an app cookie: COMMIT before the first byte, a failed COMMIT answers 500 commit_failed', async () => {
  const servers = new Map<string, string>();
  for (const h2 of [false, true])
    for (const two of [false, true]) {
      const app = h2 ? (Fastify({ http2: true }) as unknown as FastifyInstance) : Fastify();
      await app.register(fastifySessionLocal, { factory: sessionmaker(first), readYourWrites: true, onCommitError: () => undefined });
      if (two) await app.register(fastifySessionLocal, { factory: sessionmaker(second), name: 'reports', readYourWrites: true, onCommitError: () => undefined });
      routes(app, two ? [first, second] : [first]);
      servers.set(`${h2}/${two}`, await started(app));
    }
  await fc.assert(
    fc.asyncProperty(
      fc.record({ h2: fc.boolean(), two: fc.boolean(), write: fc.constantFrom<Write>('end', 'write-end', 'writeHead-end', 'flushHeaders', 'many'), fail: fc.boolean(), cookie: fc.boolean() }),
      async (c) => {
        const id = `r${++counter}`;
        const origin = servers.get(`${c.h2}/${c.two}`)!;
        const path = `/raw/${id}/${c.write}/${c.fail ? 1 : 0}/${c.cookie ? 1 : 0}`;
        const answer = c.h2 ? await get2(origin, path, id) : await get1(`${origin}${path}`, id);
        if (c.fail) {
          const error = (JSON.parse(answer.body) as { error: string }).error;
          expect({ status: answer.status, error, committed: await visible(id) }).toEqual({ status: 500, error: c.two ? 'partially_committed' : 'commit_failed', committed: c.two });
          return;
        }
        const tokens = c.two ? ['sl_lsn', 'sl_lsn_reports'] : ['sl_lsn'];
        expect({ status: answer.status, length: answer.body.length, cookies: names(answer.cookies), committedAtHead: answer.committedAtHead }).toEqual({
          status: expectedStatus(c.write),
          length: expectedLength(c.write),
          cookies: [...(c.cookie ? ['app'] : []), ...tokens].sort(),
          committedAtHead: true,
        });
      },
    ),
    { numRuns: 60 },
  );
  expect(first.stats().pool.inUse + second.stats().pool.inUse).toBe(0);
});

it('inject (light-my-request overrides the write methods: the instance fallback) holds a hijacked reply and replaces it on a failed COMMIT', async () => {
  const app = Fastify();
  apps.push(app);
  await app.register(fastifySessionLocal, { factory: sessionmaker(first), onCommitError: () => undefined });
  routes(app, [first]);
  for (const fail of [false, true]) {
    const id = `i${++counter}`;
    const response = await app.inject({ method: 'GET', url: `/raw/${id}/write-end/${fail ? 1 : 0}/0` });
    if (fail) expect({ status: response.statusCode, error: response.json<{ error: string }>().error, committed: await visible(id) }).toEqual({ status: 500, error: 'commit_failed', committed: false });
    else expect({ status: response.statusCode, body: response.body, committed: await visible(id) }).toEqual({ status: 200, body: 'ok', committed: true });
  }
});

it('not hijacked: the read-your-writes cookie joins the cookies set on the reply; a late error after the answer keeps the first answer', async () => {
  const app = Fastify({ logger: false });
  await app.register(fastifySessionLocal, { factory: sessionmaker(first), readYourWrites: true });
  app.get<{ Params: { id: string; way: string } }>('/reply/:id/:way', async (request, reply) => {
    await first.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [request.params.id] });
    const way = request.params.way;
    if (way === 'header') reply.header('set-cookie', 'app=1; Path=/');
    if (way === 'array') reply.header('set-cookie', ['app=1; Path=/', 'other=2']);
    if (way === 'raw') reply.raw.setHeader('set-cookie', 'app=1; Path=/');
    if (way === 'late') {
      reply.header('set-cookie', 'app=1; Path=/');
      void reply.code(201).send({ ok: true });
      throw new Error('late');
    }
    return { ok: true };
  });
  const origin = await started(app);
  for (const way of ['none', 'header', 'array', 'raw', 'late']) {
    const id = `p${++counter}`;
    const answer = await get1(`${origin}/reply/${id}/${way}`, id);
    const cookies = way === 'none' ? ['sl_lsn'] : way === 'array' ? ['app', 'other', 'sl_lsn'] : ['app', 'sl_lsn'];
    expect({ way, status: answer.status, cookies: names(answer.cookies), committedAtHead: answer.committedAtHead }).toEqual({
      way,
      status: way === 'late' ? 201 : 200,
      cookies,
      committedAtHead: true,
    });
  }
});

it('two registrations: a late error after the answer (second onSend) keeps the first answer, hijacked or not; a hijacked writer waiting for drain over HTTP/2 is released by a failed COMMIT', async () => {
  const app = Fastify({ http2: true }) as unknown as FastifyInstance;
  await app.register(fastifySessionLocal, { factory: sessionmaker(first), onCommitError: () => undefined });
  await app.register(fastifySessionLocal, { factory: sessionmaker(second), name: 'reports', onCommitError: () => undefined });
  const finished = new Map<string, string>();
  app.get<{ Params: { id: string; way: string } }>('/late/:id/:way', async (request, reply) => {
    const { id, way } = request.params;
    await first.sequelize.query(`INSERT INTO marks VALUES ($1, 'first')`, { bind: [id] });
    await second.sequelize.query(`INSERT INTO marks VALUES ($1, 'second')`, { bind: [`${id}-2`] });
    if (way === 'late') {
      void reply.code(201).send({ ok: true });
      throw new Error('late');
    }
    if (way === 'drain-fail') await second.sequelize.query('SELECT 1/0').catch(() => undefined);
    reply.hijack();
    const res = reply.raw;
    res.statusCode = 200;
    try {
      for (let i = 0; i < 64; i++) if (!res.write('y'.repeat(64 * 1024))) await new Promise((resolve) => res.once('drain', resolve));
      res.end();
      finished.set(id, 'done');
    } catch (error) {
      finished.set(id, `threw ${(error as Error).message}`);
    }
  });
  const origin = await started(app);
  for (const way of ['late', 'drain', 'drain-fail']) {
    const id = `l${++counter}`;
    const answer = await get2(origin, `/late/${id}/${way}`, id);
    const both = { first: await visible(id), second: await visible(`${id}-2`) };
    if (way === 'late') expect({ way, status: answer.status, body: answer.body, both }).toEqual({ way, status: 201, body: '{"ok":true}', both: { first: true, second: true } });
    if (way === 'drain')
      expect({ way, status: answer.status, length: answer.body.length, both, committedAtHead: answer.committedAtHead }).toEqual({
        way,
        status: 200,
        length: 64 * 64 * 1024,
        both: { first: true, second: true },
        committedAtHead: true,
      });
    if (way === 'drain-fail') {
      expect({ way, status: answer.status, error: (JSON.parse(answer.body) as { error: string }).error, both }).toEqual({
        way,
        status: 500,
        error: 'partially_committed',
        both: { first: true, second: false },
      });
      await expect.poll(() => finished.get(id), { timeout: 5000 }).toBe('done');
    }
  }
  expect(first.stats().pool.inUse + second.stats().pool.inUse).toBe(0);
});

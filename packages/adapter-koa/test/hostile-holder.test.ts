/**
 * Hostile review of the prototype response holder (commit 0f9bfab) through Koa: raw writes
 * (`ctx.respond = false`) over HTTP/1 and HTTP/2, a middleware wrapping `res.write`/`res.end`
 * before or after `sessionLocal` (compression-like: the instance fallback, and wrappers over the
 * prototype's), two registrations, a failed COMMIT, and the read-your-writes cookie next to
 * cookies Koa sets, before and after the session middleware.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import Koa, { type Context, type Middleware } from 'koa';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '../src/index.js';

let db: TestDatabase;
let first: Engine;
let second: Engine;
let observer: Engine; // its own pool: reads what others committed
const closers: Array<() => void> = [];
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
  for (const close of closers) close();
  await observer?.dispose();
  await first?.dispose();
  await second?.dispose();
  await db?.drop();
});

const visible = async (id: string) => {
  const [rows] = (await observer.autocommit(() => observer.sequelize.query('SELECT 1 FROM marks WHERE id = $1', { bind: [id] }))) as [unknown[], unknown];
  return rows.length === 1;
};
const names = (cookies: string[]) => cookies.map((cookie) => cookie.slice(0, cookie.indexOf('='))).sort();

interface Answer {
  status: number;
  cookies: string[];
  body: string;
  committedAtHead: boolean;
}

function get1(origin: string, path: string, id: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = http.get(`${origin}${path}`, { agent: false }, (response) => {
      const atHead = visible(id);
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => void atHead.then((committedAtHead) => resolve({ status: response.statusCode ?? 0, cookies: response.headers['set-cookie'] ?? [], body, committedAtHead })));
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
      void atHead.then((committedAtHead) => resolve({ status: Number(headers[':status']), cookies: cookie === undefined ? [] : Array.isArray(cookie) ? cookie : [cookie], body, committedAtHead }));
    });
    stream.setTimeout(10_000, () => stream.close(http2.constants.NGHTTP2_CANCEL));
  });
}

/** What `compression` does: its own `write`/`end` on the response instance, calling the ones it found. */
const wrapping: Middleware = async (ctx, next) => {
  const res = ctx.res as http.ServerResponse;
  const write = res.write;
  const end = res.end;
  let chunks = 0;
  res.write = function wrappedWrite(this: http.ServerResponse, ...args: unknown[]) {
    chunks++;
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof res.write;
  res.end = function wrappedEnd(this: http.ServerResponse, ...args: unknown[]) {
    if (!this.headersSent) this.setHeader('x-wrapped', String(chunks));
    return (end as (...a: unknown[]) => http.ServerResponse).apply(this, args);
  } as typeof res.end;
  await next();
};

type Write = 'body' | 'raw-end' | 'raw-write-end' | 'raw-writeHead' | 'stream';
interface Case {
  h2: boolean;
  two: boolean;
  wrap: 'before' | 'after' | 'none';
  write: Write;
  fail: boolean;
  cookie: 'none' | 'inner' | 'outer';
}

function appFor(two: boolean, wrap: Case['wrap']): Koa {
  const app = new Koa();
  app.silent = true;
  // a cookie set by a middleware outside the session one, after it returned
  app.use(async (ctx, next) => {
    await next();
    if (ctx.query.cookie === 'outer' && ctx.respond !== false) ctx.cookies.set('outer', '1', { httpOnly: false });
  });
  if (wrap === 'before') app.use(wrapping);
  app.use(sessionLocal({ factory: sessionmaker(first), readYourWrites: true, onCommitError: () => undefined }));
  if (two) app.use(sessionLocal({ factory: sessionmaker(second), name: 'reports', readYourWrites: true, onCommitError: () => undefined }));
  if (wrap === 'after') app.use(wrapping);
  app.use(async (ctx: Context) => {
    const { id, write, fail, cookie } = ctx.query as Record<string, string>;
    await first.sequelize.query(`INSERT INTO marks VALUES ($1, 'first')`, { bind: [id] });
    if (two) await second.sequelize.query(`INSERT INTO marks VALUES ($1, 'second')`, { bind: [`${id}-2`] });
    if (fail === '1') await (two ? second : first).sequelize.query('SELECT 1/0').catch(() => undefined);
    if (cookie === 'inner') ctx.cookies.set('inner', '1', { httpOnly: false });
    if (write === 'body') {
      ctx.body = { id };
      return;
    }
    if (write === 'stream') {
      const { Readable } = await import('node:stream');
      ctx.type = 'text/plain';
      ctx.body = Readable.from(['a', 'b', 'c']);
      return;
    }
    ctx.respond = false;
    const res = ctx.res as http.ServerResponse;
    res.statusCode = 200; // Koa starts a response at 404
    res.setHeader('content-type', 'text/plain');
    if (write === 'raw-writeHead') res.writeHead(201);
    if (write === 'raw-write-end') res.write('a');
    res.end(write === 'raw-write-end' ? 'bc' : 'abc');
  });
  return app;
}

async function serve(app: Koa, h2: boolean): Promise<string> {
  const server = h2 ? http2.createServer(app.callback()) : http.createServer(app.callback());
  closers.push(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

it('Koa over HTTP/1 and HTTP/2, raw or Koa-written, wrapped before/after, one or two registrations: COMMIT before the first byte, every cookie arrives, a failed COMMIT answers 500', async () => {
  const origins = new Map<string, string>();
  for (const h2 of [false, true]) for (const two of [false, true]) for (const wrap of ['before', 'after', 'none'] as const) origins.set(`${h2}/${two}/${wrap}`, await serve(appFor(two, wrap), h2));
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        h2: fc.boolean(),
        two: fc.boolean(),
        wrap: fc.constantFrom<Case['wrap']>('before', 'after', 'none'),
        write: fc.constantFrom<Write>('body', 'raw-end', 'raw-write-end', 'raw-writeHead', 'stream'),
        fail: fc.boolean(),
        cookie: fc.constantFrom<Case['cookie']>('none', 'inner', 'outer'),
      }),
      async (c) => {
        const id = `k${++counter}`;
        const path = `/?id=${id}&write=${c.write}&fail=${c.fail ? 1 : 0}&cookie=${c.cookie}`;
        const origin = origins.get(`${c.h2}/${c.two}/${c.wrap}`)!;
        const answer = c.h2 ? await get2(origin, path, id) : await get1(origin, path, id);
        if (c.fail) {
          const error = (JSON.parse(answer.body) as { error: string }).error;
          expect({ status: answer.status, error, committed: await visible(id) }).toEqual({ status: 500, error: c.two ? 'partially_committed' : 'commit_failed', committed: c.two });
          return;
        }
        const raw = c.write.startsWith('raw');
        const appCookies = c.cookie === 'inner' ? ['inner'] : c.cookie === 'outer' && !raw ? ['outer'] : [];
        expect({ status: answer.status, body: answer.body, cookies: names(answer.cookies), committedAtHead: answer.committedAtHead }).toEqual({
          status: c.write === 'raw-writeHead' ? 201 : 200,
          body: c.write === 'body' ? JSON.stringify({ id }) : 'abc',
          cookies: [...appCookies, 'sl_lsn', ...(c.two ? ['sl_lsn_reports'] : [])].sort(),
          committedAtHead: true,
        });
      },
    ),
    { numRuns: 80 },
  );
  expect(first.stats().pool.inUse + second.stats().pool.inUse).toBe(0);
});

it('over HTTP/2, a wrapper whose replayed write throws (a header set after the first byte) destroys the stream: no unhandled error, the server goes on', async () => {
  const app = new Koa();
  app.silent = true;
  app.use(async (ctx, next) => {
    const res = ctx.res as http.ServerResponse;
    const end = res.end;
    res.end = function throwingEnd(this: http.ServerResponse, ...args: unknown[]) {
      this.setHeader('x-too-late', '1'); // throws once a write sent the headers
      return (end as (...a: unknown[]) => http.ServerResponse).apply(this, args);
    } as typeof res.end;
    await next();
  });
  app.use(sessionLocal({ factory: sessionmaker(first) }));
  app.use(async (ctx) => {
    await first.sequelize.query('SELECT 1');
    ctx.respond = false;
    const res = ctx.res as http.ServerResponse;
    res.statusCode = 200;
    res.write('partial');
    try {
      res.end('!');
    } catch {
      // held: it throws when replayed after COMMIT
    }
  });
  const errors: unknown[] = [];
  const onError = (error: unknown) => errors.push(error);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  try {
    const origin = await serve(app, true);
    const outcome = await get2(origin, '/', 'none').then(
      (answer) => answer.body,
      (error: Error) => `failed ${error.message}`,
    );
    expect(outcome).not.toBe('partial!');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(errors).toEqual([]);
  } finally {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  }
  expect(first.stats().pool.inUse).toBe(0);
});

/**
 * Rule 2 (docs/semantics.md) however the response object is reached: the holder's wrappers sit on
 * Node's response prototype, so these cases check that every way an app puts something between
 * the handler and that prototype still holds the first byte until COMMIT. Generated over:
 * a middleware wrapping `res.write`/`res.end` on the instance (as `compression` does) before or
 * after `sessionLocal`, a mounted sub-app (Express swaps `res`'s prototype inside it), how the
 * handler writes, and whether COMMIT fails (a refused statement swallowed by the handler: rule 7).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import express, { type RequestHandler } from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '../src/index.js';

let db: TestDatabase;
let engine: Engine;
const servers: http.Server[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  engine = createEngine(db.url, { pool: { max: 4 } });
  await engine.autocommit(() => engine.sequelize.query('CREATE TABLE marks (id text PRIMARY KEY)'));
});

afterAll(async () => {
  for (const server of servers) server.close();
  await engine?.dispose();
  await db?.drop();
});

/** What `compression` does to a response: its own `write`/`end` on the instance, calling the ones it found. */
const wrapping: RequestHandler = (_req, res, next) => {
  const write = res.write;
  const end = res.end;
  const chunks: string[] = [];
  res.write = function wrappedWrite(this: typeof res, chunk: unknown, ...rest: unknown[]) {
    chunks.push(String(chunk));
    return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function wrappedEnd(this: typeof res, ...args: unknown[]) {
    if (!res.headersSent) res.setHeader('x-wrapped', String(chunks.length));
    return (end as (...args: unknown[]) => typeof res).apply(this, args);
  } as typeof res.end;
  next();
};

type Write = 'json' | 'end' | 'write-end' | 'writeHead-end';
interface Case {
  wrap: 'before' | 'after' | 'none';
  subApp: boolean;
  write: Write;
  fail: boolean;
}

let counter = 0;

async function listen(app: express.Express): Promise<string> {
  const server = app.listen(0, '127.0.0.1');
  servers.push(server);
  await new Promise((resolve) => server.once('listening', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function appFor(c: Case): express.Express {
  const app = express();
  const inner = c.subApp ? express() : app;
  if (c.wrap === 'before') app.use(wrapping);
  app.use(sessionLocal({ factory: sessionmaker(engine), onCommitError: () => undefined })); // failed COMMITs are expected here
  if (c.wrap === 'after') app.use(wrapping);
  inner.get('/mark/:id', async (req, res) => {
    // statements outside any transaction option join the request's session
    await engine.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [req.params.id] });
    // a refused statement, its error swallowed: the session is failed and COMMIT must fail
    if (c.fail) await engine.sequelize.query('SELECT 1/0').catch(() => undefined);
    const body = JSON.stringify({ id: req.params.id });
    if (c.write === 'json') res.json({ id: req.params.id });
    else if (c.write === 'end') res.type('json').end(body);
    else if (c.write === 'write-end') {
      res.type('json').write(body.slice(0, 3));
      res.end(body.slice(3));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    }
  });
  if (c.subApp) app.use('/sub', inner);
  return app;
}

it('a response reached through instance wrappers or a sub-app is held until COMMIT, and a failed COMMIT replaces it', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.record({
        wrap: fc.constantFrom<Case['wrap']>('before', 'after', 'none'),
        subApp: fc.boolean(),
        write: fc.constantFrom<Write>('json', 'end', 'write-end', 'writeHead-end'),
        fail: fc.boolean(),
      }),
      async (c) => {
        const base = await listen(appFor(c));
        const id = `m${++counter}`;
        const response = await fetch(`${base}${c.subApp ? '/sub' : ''}/mark/${id}`, { signal: AbortSignal.timeout(10_000) });
        const body = (await response.json()) as Record<string, unknown>;
        const [rows] = (await engine.autocommit(() => engine.sequelize.query('SELECT id FROM marks WHERE id = $1', { bind: [id] }))) as [unknown[], unknown];
        if (c.fail) {
          expect({ status: response.status, error: body.error }).toEqual({ status: 500, error: 'commit_failed' });
          expect(rows).toHaveLength(0);
        } else {
          expect({ status: response.status, body }).toEqual({ status: 200, body: { id } });
          expect(rows).toHaveLength(1);
        }
      },
    ),
    { numRuns: 48 },
  );
});

it('a server in the same process without sessionlocal writes through the patched prototype unchanged', async () => {
  // make sure the holder is installed (a first held request), then serve plain node:http responses
  const base = await listen(appFor({ wrap: 'none', subApp: false, write: 'json', fail: false }));
  expect((await fetch(`${base}/mark/plain-warmup`)).status).toBe(200);
  const plain = http.createServer((_req, res) => {
    res.setHeader('x-plain', 'yes');
    res.write('hel');
    res.end('lo');
    expect(res.headersSent).toBe(true);
  });
  servers.push(plain);
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
  const response = await fetch(`http://127.0.0.1:${(plain.address() as AddressInfo).port}/`);
  expect({ status: response.status, header: response.headers.get('x-plain'), body: await response.text() }).toEqual({ status: 200, header: 'yes', body: 'hello' });
});

it('a wrapper whose replayed write throws (a header set after the first byte) destroys the response: the client never gets a complete answer, the process stays up', async () => {
  const app = express();
  app.use((_req, res, next) => {
    const end = res.end;
    res.end = function throwingEnd(this: typeof res, ...args: unknown[]) {
      res.setHeader('x-too-late', '1'); // throws ERR_HTTP_HEADERS_SENT once a write sent the headers
      return (end as (...args: unknown[]) => typeof res).apply(this, args);
    } as typeof res.end;
    next();
  });
  app.use(sessionLocal({ factory: sessionmaker(engine) }));
  app.get('/late-header', async (_req, res) => {
    await engine.sequelize.query('SELECT 1');
    res.type('json').write('{"partial"');
    try {
      res.end(':true}');
    } catch {
      // without the hold this would throw here; held, it throws when replayed after COMMIT
    }
  });
  const base = await listen(app);
  const outcome = await fetch(`${base}/late-header`, { signal: AbortSignal.timeout(10_000) }).then(
    async (response) => ({ status: response.status, body: await response.text().catch(() => 'cut') }),
    (error: Error) => ({ failed: error.name }),
  );
  expect(outcome).not.toEqual({ status: 200, body: '{"partial":true}' });
  // the process and the pool are fine: the next request (a fresh connection) is served
  const status = await new Promise<number | undefined>((resolve, reject) => {
    http.get(`${base}/missing`, { agent: false }, (response) => resolve(response.resume().statusCode)).on('error', reject);
  });
  expect(status).toBe(404);
  expect(engine.stats().pool.inUse).toBe(0);
});

it('a sessionLocal() created per request (a factory chosen per tenant) never stacks wrappers on the response prototype', async () => {
  const app = express();
  const factory = sessionmaker(engine);
  // the middleware made anew for every request: each call creates its own response holder
  app.use((req, res, next) => sessionLocal({ factory })(req, res, next));
  app.get('/n/:id', async (req, res) => {
    await engine.sequelize.query('SELECT 1');
    res.json({ id: req.params.id });
  });
  const base = await listen(app);
  expect((await fetch(`${base}/n/0`)).status).toBe(200);
  const methods = () => ['writeHead', 'write', 'end', 'setHeader'].map((name) => (http.ServerResponse.prototype as unknown as Record<string, unknown>)[name]);
  const before = methods();
  for (let i = 1; i <= 200; i++) {
    const response = await fetch(`${base}/n/${i}`);
    expect(await response.json()).toEqual({ id: String(i) });
  }
  expect(methods()).toEqual(before);
});

/**
 * Hostile review of the response holder on Node's response prototype (commit 0f9bfab): the
 * read-your-writes cookie merged with the app's cookies however the app sets them, two
 * registrations whose holders were put on the prototype in the opposite order, streaming with
 * backpressure and pipes, `flushHeaders`, `headersSent`/`setHeader` while held, a plain
 * node:http server in the same process, a client leaving mid-hold.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import express from 'express';
import fc from 'fast-check';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { sessionLocal } from '../src/index.js';

let db: TestDatabase;
let first: Engine;
let second: Engine;
let observer: Engine; // its own pool: reads what others committed
const servers: http.Server[] = [];
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
  for (const server of servers) server.close();
  await observer?.dispose();
  await first?.dispose();
  await second?.dispose();
  await db?.drop();
});

async function listen(app: express.Express | http.RequestListener): Promise<string> {
  const server = http.createServer(app as http.RequestListener);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const visible = async (id: string) => {
  const [rows] = (await observer.autocommit(() => observer.sequelize.query('SELECT 1 FROM marks WHERE id = $1', { bind: [id] }))) as [unknown[], unknown];
  return rows.length === 1;
};

/** GET with node:http: status, headers, body, and whether the row was committed when the status line arrived (rule 2). */
function get(url: string, id?: string): Promise<{ status: number; cookies: string[]; headers: http.IncomingHttpHeaders; body: string; committedAtHead?: boolean }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent: false }, (response) => {
      const atHead = id === undefined ? Promise.resolve(undefined) : visible(id);
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => {
        void atHead.then((committedAtHead) =>
          resolve({ status: response.statusCode ?? 0, cookies: response.headers['set-cookie'] ?? [], headers: response.headers, body, ...(committedAtHead !== undefined && { committedAtHead }) }),
        );
      });
      response.on('error', reject);
    });
    request.on('error', reject);
    request.setTimeout(10_000, () => request.destroy(new Error('timeout')));
  });
}

const names = (cookies: string[]) => cookies.map((cookie) => cookie.slice(0, cookie.indexOf('='))).sort();

type CookieWay = 'none' | 'setHeader' | 'setHeader-array' | 'res.cookie' | 'writeHead-object' | 'writeHead-array';
type WriteWay = 'end' | 'write-end' | 'json';

it('the read-your-writes cookie and the app cookies all reach the client, however the app sets its cookies and writes', async () => {
  const SessionLocal = sessionmaker(first);
  const app = express();
  app.use(sessionLocal({ factory: SessionLocal, readYourWrites: true }));
  app.get('/c/:id/:cookie/:write', async (req, res) => {
    await first.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [req.params.id] });
    const way = req.params.cookie as CookieWay;
    const write = req.params.write as WriteWay;
    if (way === 'setHeader') res.setHeader('set-cookie', 'app=1; Path=/');
    if (way === 'setHeader-array') res.setHeader('set-cookie', ['app=1; Path=/', 'other=2; Path=/']);
    if (way === 'res.cookie') res.cookie('app', '1');
    if (way === 'writeHead-object') res.writeHead(200, { 'content-type': 'text/plain', 'set-cookie': ['app=1; Path=/'] });
    if (way === 'writeHead-array') res.writeHead(200, ['content-type', 'text/plain', 'set-cookie', 'app=1; Path=/']);
    if (write === 'json' && !way.startsWith('writeHead')) return void res.json({ ok: true });
    if (write === 'write-end') res.write('o');
    res.end('k');
  });
  const base = await listen(app);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<CookieWay>('none', 'setHeader', 'setHeader-array', 'res.cookie', 'writeHead-object', 'writeHead-array'),
      fc.constantFrom<WriteWay>('end', 'write-end', 'json'),
      async (way, write) => {
        const id = `c${++counter}`;
        const response = await get(`${base}/c/${id}/${way}/${write}`, id);
        const expected = way === 'none' ? ['sl_lsn'] : way === 'setHeader-array' ? ['app', 'other', 'sl_lsn'] : ['app', 'sl_lsn'];
        expect({ status: response.status, cookies: names(response.cookies), committedAtHead: response.committedAtHead }).toEqual({ status: 200, cookies: expected, committedAtHead: true });
      },
    ),
    { numRuns: 36 },
  );
});

it('two registrations with read-your-writes: both tokens reach the client, whichever holder was put on the prototype first', async () => {
  const First = sessionmaker(first);
  const Second = sessionmaker(second);
  const secondOnly = express();
  const both = express();
  const registrationFirst = sessionLocal({ factory: First, readYourWrites: true });
  const registrationSecond = sessionLocal({ factory: Second, name: 'reports', readYourWrites: true });
  // the second registration alone serves the first request: its holder goes on the prototype first
  secondOnly.use(registrationSecond);
  secondOnly.get('/x', async (_req, res) => {
    await second.sequelize.query('SELECT 1');
    res.json({ ok: true });
  });
  both.use(registrationFirst, registrationSecond);
  both.get('/both/:id/:write', async (req, res) => {
    await first.sequelize.query(`INSERT INTO marks VALUES ($1, 'first')`, { bind: [`${req.params.id}a`] });
    await second.sequelize.query(`INSERT INTO marks VALUES ($1, 'second')`, { bind: [req.params.id] });
    if (req.params.write === 'json') return void res.json({ ok: true });
    res.write('o');
    res.end('k');
  });
  const one = await listen(secondOnly);
  const two = await listen(both);
  expect((await get(`${one}/x`)).status).toBe(200);
  for (const write of ['json', 'write-end']) {
    const id = `b${++counter}`;
    const response = await get(`${two}/both/${id}/${write}`, id);
    expect({ write, status: response.status, cookies: names(response.cookies), committedAtHead: response.committedAtHead }).toEqual({
      write,
      status: 200,
      cookies: ['sl_lsn', 'sl_lsn_reports'],
      committedAtHead: true,
    });
  }
});

type Stream = 'writes' | 'drain' | 'pipe' | 'flushHeaders';

it('streamed responses (many writes, waiting for drain, a piped Readable, flushHeaders first) commit before the first byte; a failed COMMIT replaces them and releases the writer', async () => {
  const SessionLocal = sessionmaker(first);
  const app = express();
  const finished = new Map<string, boolean>();
  app.use(sessionLocal({ factory: SessionLocal, onCommitError: () => undefined }));
  app.get('/s/:id/:way/:fail', async (req, res) => {
    const { id } = req.params;
    await first.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [id] });
    if (req.params.fail === '1') await first.sequelize.query('SELECT 1/0').catch(() => undefined);
    res.setHeader('content-type', 'text/plain');
    res.setHeader('x-way', req.params.way);
    const chunk = 'x'.repeat(64 * 1024);
    const way = req.params.way as Stream;
    if (way === 'flushHeaders') {
      res.status(203);
      res.flushHeaders();
      res.write(chunk);
      res.end('!');
    } else if (way === 'pipe') {
      Readable.from(Array.from({ length: 40 }, () => chunk)).pipe(res);
      await new Promise((resolve) => res.on('close', resolve));
    } else {
      for (let i = 0; i < 40; i++) {
        const more = res.write(chunk);
        if (!more && way === 'drain') await new Promise((resolve) => res.once('drain', resolve));
      }
      res.end('!');
    }
    finished.set(id, true);
  });
  const base = await listen(app);
  await fc.assert(
    fc.asyncProperty(fc.constantFrom<Stream>('writes', 'drain', 'pipe', 'flushHeaders'), fc.boolean(), async (way, fail) => {
      const id = `s${++counter}`;
      const response = await get(`${base}/s/${id}/${way}/${fail ? 1 : 0}`, id);
      if (fail) {
        expect({ status: response.status, error: (JSON.parse(response.body) as { error: string }).error, committed: await visible(id) }).toEqual({
          status: 500,
          error: 'commit_failed',
          committed: false,
        });
      } else {
        const length = way === 'pipe' ? 40 * 64 * 1024 : way === 'flushHeaders' ? 64 * 1024 + 1 : 40 * 64 * 1024 + 1;
        expect({ status: response.status, way: response.headers['x-way'], length: response.body.length, committedAtHead: response.committedAtHead }).toEqual({
          status: way === 'flushHeaders' ? 203 : 200,
          way,
          length,
          committedAtHead: true,
        });
      }
      // the handler was not left waiting for a 'drain' that never comes
      await expect.poll(() => finished.get(id), { timeout: 5000 }).toBe(true);
    }),
    { numRuns: 16 },
  );
  expect(first.stats().pool.inUse).toBe(0);
});

it('while the ended response is held, headersSent reads true and setHeader throws ERR_HTTP_HEADERS_SENT; writes after end are refused; a plain server in the process is unaffected', async () => {
  const SessionLocal = sessionmaker(first);
  const app = express();
  const seen: unknown[] = [];
  app.use(sessionLocal({ factory: SessionLocal }));
  app.get('/h/:id', async (req, res) => {
    await first.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [req.params.id] });
    res.setHeader('x-before', '1');
    const beforeEnd = res.headersSent;
    res.end('done');
    let code: unknown;
    try {
      res.setHeader('x-after', '1');
    } catch (error) {
      code = (error as { code?: string }).code;
    }
    seen.push({ beforeEnd, afterEnd: res.headersSent, code });
  });
  const plainSeen: unknown[] = [];
  const plain = await listen((_req: http.IncomingMessage, res: http.ServerResponse) => {
    const beforeWrite = res.headersSent;
    res.writeHead(201, { 'x-plain': 'yes' });
    res.end('plain');
    let code: unknown;
    try {
      res.setHeader('x-late', '1');
    } catch (error) {
      code = (error as { code?: string }).code;
    }
    plainSeen.push({ beforeWrite, afterEnd: res.headersSent, code });
  });
  const base = await listen(app);
  const id = `h${++counter}`;
  const response = await get(`${base}/h/${id}`, id);
  expect({ status: response.status, body: response.body, before: response.headers['x-before'], after: response.headers['x-after'], committedAtHead: response.committedAtHead }).toEqual({
    status: 200,
    body: 'done',
    before: '1',
    after: undefined,
    committedAtHead: true,
  });
  expect(seen).toEqual([{ beforeEnd: false, afterEnd: true, code: 'ERR_HTTP_HEADERS_SENT' }]);
  const plainResponse = await get(plain);
  expect({ status: plainResponse.status, body: plainResponse.body, header: plainResponse.headers['x-plain'] }).toEqual({ status: 201, body: 'plain', header: 'yes' });
  expect(plainSeen).toEqual([{ beforeWrite: false, afterEnd: true, code: 'ERR_HTTP_HEADERS_SENT' }]);
});

it('a client that leaves while its first byte is held: the request rolls back or commits, never hangs, and the pool is returned', async () => {
  const SessionLocal = sessionmaker(first);
  const app = express();
  await first.autocommit(() =>
    first.sequelize.query(`
      CREATE TABLE slow_commit (id text);
      CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.4); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON slow_commit DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();`),
  );
  app.use(sessionLocal({ factory: SessionLocal }));
  app.get('/slow', async (_req, res) => {
    await first.sequelize.query(`INSERT INTO slow_commit VALUES ('x')`);
    res.write('first');
    res.end('last');
  });
  const base = await listen(app);
  const request = http.get(`${base}/slow`, { agent: false });
  request.on('error', () => undefined);
  setTimeout(() => request.destroy(), 100);
  await new Promise((resolve) => setTimeout(resolve, 900));
  expect(first.stats().pool.inUse).toBe(0);
  expect((await get(`${base}/missing`)).status).toBe(404);
});

type Wrap = 'none' | 'before-first' | 'between' | 'after-second';
type Fail = 'none' | 'first' | 'second';

it('two registrations, the second maybe in a mounted sub-app (Express swaps the prototype), a compression-like wrapper anywhere among them: held until both COMMIT, a failure answers 500', async () => {
  /** `compression`'s shape: own write/end on the instance over the ones it found, a header set at end. */
  const wrapping: express.RequestHandler = (_req, res, next) => {
    const write = res.write;
    const end = res.end;
    let chunks = 0;
    res.write = function wrappedWrite(this: typeof res, ...args: unknown[]) {
      chunks++;
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof res.write;
    res.end = function wrappedEnd(this: typeof res, ...args: unknown[]) {
      if (!this.headersSent) this.setHeader('x-wrapped', String(chunks));
      return (end as (...a: unknown[]) => typeof res).apply(this, args);
    } as typeof res.end;
    next();
  };
  const origins = new Map<string, string>();
  for (const wrap of ['none', 'before-first', 'between', 'after-second'] as const)
    for (const sub of [false, true]) {
      const app = express();
      const inner = sub ? express() : app;
      if (wrap === 'before-first') app.use(wrapping);
      app.use(sessionLocal({ factory: sessionmaker(first), onCommitError: () => undefined }));
      if (wrap === 'between') app.use(wrapping);
      inner.use(sessionLocal({ factory: sessionmaker(second), name: 'reports', onCommitError: () => undefined }));
      if (wrap === 'after-second') inner.use(wrapping);
      inner.get('/w/:id/:write/:fail', async (req, res) => {
        const { id, write, fail } = req.params;
        await first.sequelize.query(`INSERT INTO marks VALUES ($1, 'first')`, { bind: [id] });
        await second.sequelize.query(`INSERT INTO marks VALUES ($1, 'second')`, { bind: [`${id}-2`] });
        if (fail !== 'none') await (fail === 'first' ? first : second).sequelize.query('SELECT 1/0').catch(() => undefined);
        if (write === 'json') return void res.json({ id });
        if (write === 'writeHead') res.writeHead(200, { 'content-type': 'application/json' });
        else res.type('json');
        const body = JSON.stringify({ id });
        res.write(body.slice(0, 2));
        res.end(body.slice(2));
      });
      if (sub) app.use('/sub', inner);
      origins.set(`${wrap}/${sub}`, await listen(app));
    }
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<Wrap>('none', 'before-first', 'between', 'after-second'),
      fc.boolean(),
      fc.constantFrom('json', 'write-end', 'writeHead'),
      fc.constantFrom<Fail>('none', 'first', 'second'),
      async (wrap, sub, write, fail) => {
        const id = `w${++counter}`;
        const answer = await get(`${origins.get(`${wrap}/${sub}`)}${sub ? '/sub' : ''}/w/${id}/${write}/${fail}`, id);
        const committed = { first: await visible(id), second: await visible(`${id}-2`) };
        if (fail === 'none') {
          expect({ status: answer.status, body: JSON.parse(answer.body) as unknown, committed, committedAtHead: answer.committedAtHead }).toEqual({
            status: 200,
            body: { id },
            committed: { first: true, second: true },
            committedAtHead: true,
          });
        } else {
          expect({ status: answer.status, error: (JSON.parse(answer.body) as { error: string }).error, committed }).toEqual({
            status: 500,
            error: fail === 'first' ? 'commit_failed' : 'partially_committed',
            committed: { first: fail === 'second', second: false },
          });
        }
      },
    ),
    { numRuns: 60 },
  );
  expect(first.stats().pool.inUse + second.stats().pool.inUse).toBe(0);
});

it('a method patched on OutgoingMessage.prototype after the holder went onto ServerResponse.prototype (an instrumentation loaded late) still runs for every response', async () => {
  const app = express();
  app.use(sessionLocal({ factory: sessionmaker(first) }));
  app.get('/warm', async (_req, res) => {
    await first.sequelize.query('SELECT 1');
    res.end('warm');
  });
  expect((await get(`${await listen(app)}/warm`)).body).toBe('warm');
  const proto = http.OutgoingMessage.prototype as unknown as { end: (...args: unknown[]) => unknown };
  const end = proto.end;
  let seen = 0;
  proto.end = function instrumentedEnd(this: unknown, ...args: unknown[]) {
    if (this instanceof http.ServerResponse) seen++; // not the test client's request
    return end.apply(this, args);
  };
  try {
    const plain = await listen((_req: http.IncomingMessage, res: http.ServerResponse) => res.end('plain'));
    expect((await get(plain)).body).toBe('plain');
    expect(seen).toBe(1);
  } finally {
    proto.end = end;
  }
});

it('a handler awaiting its write callbacks (util.promisify(res.write), res.end(cb)) is not left hanging when a failed COMMIT replaces its response', async () => {
  const app = express();
  const outcome = new Map<string, string>();
  app.use(sessionLocal({ factory: sessionmaker(first), onCommitError: () => undefined }));
  app.get('/cb/:id/:fail', async (req, res) => {
    const { id } = req.params;
    try {
      await first.sequelize.query('INSERT INTO marks(id) VALUES ($1)', { bind: [id] });
      if (req.params.fail === '1') await first.sequelize.query('SELECT 1/0').catch(() => undefined);
      res.type('text');
      for (let i = 0; i < 3; i++) await new Promise<void>((resolve, reject) => res.write(`chunk${i}`, (error) => (error ? reject(error) : resolve())));
      await new Promise<void>((resolve) => res.end('!', () => resolve()));
      outcome.set(id, 'done');
    } catch (error) {
      outcome.set(id, `threw ${(error as Error).message}`);
    }
  });
  const base = await listen(app);
  for (const fail of [false, true]) {
    const id = `cb${++counter}`;
    const answer = await get(`${base}/cb/${id}/${fail ? 1 : 0}`, id);
    expect(answer.status).toBe(fail ? 500 : 200);
    await expect.poll(() => outcome.get(id), { timeout: 3000 }).toBeDefined();
  }
});

import { EventEmitter } from 'node:events';
import http from 'node:http';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { QueryTypes } from 'sequelize';
import { expect } from 'vitest';
import { NoActiveSessionError, PoolTimeoutError, sqlState } from '../errors.js';
import type { RequestSessionOptions } from '../request-scope.js';
import { Session } from '../session.js';
import { sessionmaker, type SessionFactory } from '../sessionmaker.js';
import { uniqueLabel, type Fixture } from './fixture.js';
import { readBody, request, send } from './http.js';
import { CALLBACK_JSON, type ConformanceRoute, type HandlerContext, type RequestLike } from './kit.js';

/** What a scenario gets: the fixture and a way to start an app of the adapter under test. */
export interface ScenarioContext {
  fx: Fixture;
  /** Apps started now serve HTTP/2 (the HTTP/2 scenarios set it). */
  http2?: boolean;
  /** Start the adapter's app with these routes; `options` are merged over `{ factory: fx.factory }`. */
  app(routes: ConformanceRoute[], options?: Partial<RequestSessionOptions<RequestLike>>, registrations?: RequestSessionOptions<RequestLike>[]): Promise<{ url: string; errors: unknown[] }>;
}

/** One behaviour of SPEC §3, checked over real HTTP. */
export interface Scenario {
  /** SPEC §3 rule(s) it proves. */
  rules: number[];
  name: string;
  run(t: ScenarioContext): Promise<void>;
}

// -- handler helpers (framework-neutral) --

function need(db: Session | null | undefined): Session {
  if (!(db instanceof Session)) throw new Error('the adapter gave the handler no session');
  return db;
}

/** A query with no `transaction` option: it must join the request session through the async context. */
function sql<T = Record<string, any>>(factory: SessionFactory, text: string, bind?: unknown[]): Promise<T[]> {
  return factory.engine.sequelize.query(text, { bind, type: QueryTypes.SELECT }) as Promise<T[]>;
}

/** The same, with the session's transaction passed explicitly. */
async function explicitSql<T = Record<string, any>>(db: Session, text: string): Promise<T[]> {
  return db.factory.engine.sequelize.query(text, { type: QueryTypes.SELECT, transaction: await db.transaction() }) as Promise<T[]>;
}

function label(ctx: HandlerContext): string {
  const fromBody = (ctx.body as { label?: string } | undefined)?.label;
  return String(fromBody ?? ctx.query.label);
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(10);
  }
}

/** A route that inserts `label` into `table` and answers `status` (201 unless the body says otherwise). */
function insertRoute(path: string, table: 'conf_items' | 'conf_slow', extra?: (ctx: HandlerContext) => Promise<void>): ConformanceRoute {
  return {
    method: 'POST',
    path,
    handler: async (ctx) => {
      const db = need(ctx.db);
      await sql(db.factory, `INSERT INTO ${table} (label) VALUES ($1) RETURNING id`, [label(ctx)]);
      if (extra) await extra(ctx);
      return { status: Number((ctx.body as { status?: number }).status ?? 201), body: { ok: true } };
    },
  };
}

/**
 * A session holding the engine's only connection. Opening that first connection counts against
 * the short acquire deadline too; on a loaded machine it can miss it, so try a few times.
 */
export async function holdOnlyConnection(factory: SessionFactory): Promise<Session> {
  for (let attempt = 1; ; attempt++) {
    const holder = factory();
    try {
      await holder.begin();
      return holder;
    } catch (error) {
      await holder.close();
      if (!(error instanceof PoolTimeoutError) || attempt >= 5) throw error;
    }
  }
}

/** Break the deferred unique constraint: only COMMIT fails. */
async function breakAtCommit(ctx: HandlerContext): Promise<void> {
  const k = Math.floor(Math.random() * 1e9);
  await sql(need(ctx.db).factory, 'INSERT INTO conf_unique (k) VALUES ($1), ($1) RETURNING k', [k]);
}

function streamOf(...chunks: string[]): Readable {
  return Readable.from(chunks.map((c) => Buffer.from(c)));
}

// -- the table --

export const scenarios: Scenario[] = [
  {
    rules: [1],
    name: 'acquires no connection for a request that never queries (lazy)',
    async run(t) {
      const engine = t.fx.newEngine({ pool: { max: 2 } });
      const factory = sessionmaker(engine);
      const { url } = await t.app(
        [
          {
            method: 'GET',
            path: '/noop',
            handler: async (ctx) => ({ status: 200, body: { session: ctx.db instanceof Session, state: ctx.db?.state, current: factory.currentOrUndefined() === ctx.db } }),
          },
        ],
        { factory },
      );
      for (let i = 0; i < 5; i++) {
        const reply = await request(url, '/noop');
        expect(reply.status).toBe(200);
        expect(reply.json).toEqual({ session: true, state: 'idle', current: true });
      }
      expect(engine.stats().pool.size).toBe(0);
      expect(engine.stats().sessions.opened).toBe(0);
    },
  },
  {
    rules: [1, 3],
    name: 'makes SessionLocal.current() the request session across awaits, timers and emitters (GET)',
    async run(t) {
      const { factory } = t.fx;
      const deep = async () => factory.current();
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/current',
          handler: async (ctx) => {
            const db = need(ctx.db);
            const seen = [factory.current() === db, (await deep()) === db];
            await sleep(5);
            seen.push(factory.current() === db);
            await new Promise<void>((resolve) => {
              const emitter = new EventEmitter();
              emitter.on('tick', () => {
                seen.push(factory.current() === db);
                resolve();
              });
              setTimeout(() => emitter.emit('tick'), 1);
            });
            const [implicit] = await sql(factory, 'SELECT txid_current()::text AS tx, pg_backend_pid() AS pid');
            const [explicit] = await explicitSql(db, 'SELECT txid_current()::text AS tx, pg_backend_pid() AS pid');
            return { status: 200, body: { seen, sameTransaction: implicit!.tx === explicit!.tx && implicit!.pid === explicit!.pid } };
          },
        },
      ]);
      const reply = await request(url, '/current?x=1');
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({ seen: [true, true, true, true], sameTransaction: true });
    },
  },
  {
    rules: [1, 3],
    name: 'keeps SessionLocal.current() after parsing a JSON body (POST), also with a callback-style body reader, and commits the write',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/echo',
          handler: async (ctx) => {
            const db = need(ctx.db);
            const current = factory.currentOrUndefined() === db;
            await sql(factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [label(ctx)]);
            await sleep(1);
            return { status: 201, body: { current, again: factory.currentOrUndefined() === db, inTransaction: db.inTransaction, padding: (ctx.body as { padding: string }).padding.length } };
          },
        },
      ]);
      for (const contentType of ['application/json', CALLBACK_JSON]) {
        const name = uniqueLabel('post');
        // headers first, the body later in two parts: it arrives in events of the socket
        const reply = await request(url, '/echo', { body: { label: name, padding: 'x'.repeat(60_000) }, headers: { 'content-type': contentType }, trickleMs: 30 });
        expect(reply.status, contentType).toBe(201);
        expect(reply.json, contentType).toEqual({ current: true, again: true, inTransaction: true, padding: 60_000 });
        expect(await t.fx.count('conf_items', name), contentType).toBe(1);
      }
    },
  },
  {
    rules: [1, 3],
    name: 'never shares a session between concurrent requests',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/whoami',
          handler: async (ctx) => {
            const db = need(ctx.db);
            await sleep(Math.random() * 20);
            const [row] = await sql(factory, 'SELECT pg_backend_pid() AS pid');
            await sleep(Math.random() * 20);
            const [again] = await explicitSql(db, 'SELECT pg_backend_pid() AS pid');
            return { status: 200, body: { id: db.id, same: factory.current() === db && row!.pid === again!.pid } };
          },
        },
      ]);
      const replies = await Promise.all(Array.from({ length: 30 }, () => request(url, '/whoami')));
      expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200));
      expect(replies.every((r) => r.json.same)).toBe(true);
      expect(new Set(replies.map((r) => r.json.id)).size).toBe(30);
    },
  },
  {
    rules: [2],
    name: 'commits before the status line is sent (a 300 ms COMMIT is done when headers arrive)',
    async run(t) {
      const { url } = await t.app([insertRoute('/slow', 'conf_slow')]);
      const name = uniqueLabel('slow');
      let visibleAtHeaders = -1;
      const reply = await request(url, '/slow', {
        body: { label: name },
        onResponse: async () => {
          visibleAtHeaders = await t.fx.count('conf_slow', name);
        },
      });
      expect(reply.status).toBe(201);
      expect(visibleAtHeaders).toBe(1);
    },
  },
  {
    rules: [2, 6],
    name: 'answers 500, never 2xx, when COMMIT fails (deferred constraint), and saves nothing',
    async run(t) {
      const { url } = await t.app([insertRoute('/defer', 'conf_items', breakAtCommit)]);
      const name = uniqueLabel('defer');
      const reply = await request(url, '/defer', { body: { label: name } });
      expect(reply.status).toBe(500);
      expect(reply.json).toMatchObject({ error: 'commit_failed' });
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
  {
    rules: [2],
    name: 'commits a streamed response before its first byte',
    async run(t) {
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/stream',
          handler: async (ctx) => {
            await sql(need(ctx.db).factory, 'INSERT INTO conf_slow (label) VALUES ($1) RETURNING id', [label(ctx)]);
            return { status: 200, headers: { 'content-type': 'text/plain' }, stream: streamOf('one\n', 'two\n', 'three\n') };
          },
        },
      ]);
      const name = uniqueLabel('stream');
      let visibleAtHeaders = -1;
      const reply = await request(url, `/stream?label=${name}`, {
        onResponse: async () => {
          visibleAtHeaders = await t.fx.count('conf_slow', name);
        },
      });
      expect(reply.status).toBe(200);
      expect(reply.text).toBe('one\ntwo\nthree\n');
      expect(visibleAtHeaders).toBe(1);
    },
  },
  {
    rules: [2, 6],
    name: 'answers 500 instead of a streamed 2xx when COMMIT fails',
    async run(t) {
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/stream-defer',
          handler: async (ctx) => {
            await sql(need(ctx.db).factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [label(ctx)]);
            await breakAtCommit(ctx);
            return { status: 200, headers: { 'content-type': 'text/plain' }, stream: streamOf('never\n') };
          },
        },
      ]);
      const name = uniqueLabel('stream-defer');
      const reply = await request(url, `/stream-defer?label=${name}`);
      expect(reply.status).toBe(500);
      expect(reply.json).toMatchObject({ error: 'commit_failed' });
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
  ...afterResponseScenarios(),
  {
    rules: [3],
    name: 'rolls back when the handler throws, and the error reaches the framework',
    async run(t) {
      const thrown: Error[] = [];
      const { url, errors } = await t.app([
        insertRoute('/throw', 'conf_items', async () => {
          const error = new Error('handler failed on purpose');
          thrown.push(error);
          throw error;
        }),
      ]);
      const name = uniqueLabel('throw');
      const reply = await request(url, '/throw', { body: { label: name } });
      expect(reply.status).toBe(500);
      expect(thrown).toHaveLength(1);
      expect(errors).toContain(thrown[0]);
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
  {
    rules: [3],
    name: 'rolls back when the status fails commitWhen (default: status < 400)',
    async run(t) {
      const { url } = await t.app([insertRoute('/status', 'conf_items')]);
      const rejected = uniqueLabel('409');
      const ok = uniqueLabel('200');
      expect((await request(url, '/status', { body: { label: rejected, status: 409 } })).status).toBe(409);
      expect((await request(url, '/status', { body: { label: ok, status: 200 } })).status).toBe(200);
      expect(await t.fx.count('conf_items', rejected)).toBe(0);
      expect(await t.fx.count('conf_items', ok)).toBe(1);
    },
  },
  {
    rules: [3],
    name: 'honours a custom commitWhen, app-wide and per route',
    async run(t) {
      const perRoute = { ...insertRoute('/route-status', 'conf_items'), session: { commitWhen: (status: number) => status === 202 } };
      const { url } = await t.app([insertRoute('/status', 'conf_items'), perRoute], { commitWhen: (status) => status < 500 });
      const [a, b, c] = [uniqueLabel('409'), uniqueLabel('500'), uniqueLabel('route-201')];
      const d = uniqueLabel('route-202');
      expect((await request(url, '/status', { body: { label: a, status: 409 } })).status).toBe(409);
      expect((await request(url, '/status', { body: { label: b, status: 500 } })).status).toBe(500);
      expect((await request(url, '/route-status', { body: { label: c, status: 201 } })).status).toBe(201);
      expect((await request(url, '/route-status', { body: { label: d, status: 202 } })).status).toBe(202);
      expect([await t.fx.count('conf_items', a), await t.fx.count('conf_items', b), await t.fx.count('conf_items', c), await t.fx.count('conf_items', d)]).toEqual([1, 0, 0, 1]);
    },
  },
  {
    rules: [4, 6],
    name: 'aborts req.db.signal at once when the client disconnects, rolls back and releases the connection when the handler settles',
    async run(t) {
      const started = deferred();
      const settled = deferred<{ abortedAt: number; settledAt: number; state: string }>();
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/sleep',
          handler: async (ctx) => {
            const db = need(ctx.db);
            let abortedAt = 0;
            db.signal.addEventListener('abort', () => (abortedAt = performance.now()));
            await sql(db.factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [label(ctx)]);
            started.resolve();
            try {
              await sql(db.factory, 'SELECT pg_sleep(1)');
            } catch {
              // the session may be closed under the statement; either way the handler settles
            }
            settled.resolve({ abortedAt, settledAt: performance.now(), state: db.state });
            return { status: 200, body: { late: true } };
          },
        },
      ]);
      const name = uniqueLabel('abort');
      const { req, response } = send(url, `/sleep?label=${name}`);
      response.catch(() => undefined);
      req.on('error', () => undefined);
      await started.promise;
      await sleep(50);
      const destroyedAt = performance.now();
      req.destroy();
      const outcome = await settled.promise;
      expect(outcome.abortedAt, 'signal aborted').toBeGreaterThan(0);
      expect(outcome.abortedAt - destroyedAt, 'signal aborted at disconnect, not when the handler settled').toBeLessThan(300);
      expect(outcome.abortedAt).toBeLessThan(outcome.settledAt);
      await until(() => t.fx.engine.stats().pool.inUse === 0, 'connection released');
      expect(await t.fx.idleInTransaction()).toBe(0);
      await sleep(50);
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
  {
    rules: [5, 3],
    name: 'answers 503 with Retry-After when the pool is exhausted',
    async run(t) {
      const engine = t.fx.newEngine({ pool: { max: 1, acquireTimeoutMs: 200 } });
      const factory = sessionmaker(engine);
      const holder = await holdOnlyConnection(factory);
      try {
        const busy: ConformanceRoute = {
          method: 'GET',
          path: '/busy',
          handler: async (ctx) => {
            await sql(need(ctx.db).factory, 'SELECT 1 AS one');
            return { status: 200, body: { ok: true } };
          },
        };
        const { url, errors } = await t.app([busy], { factory });
        const reply = await request(url, '/busy');
        expect(reply.status).toBe(503);
        expect(reply.headers['retry-after']).toBe('1');
        expect(errors.some((e) => e instanceof PoolTimeoutError)).toBe(true);
      } finally {
        await holder.close();
      }
    },
  },
  {
    rules: [1],
    name: 'lets a route opt out of the session',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/out',
          session: false,
          handler: async (ctx) => {
            const [row] = await sql(factory, `SELECT now() = statement_timestamp() AS autocommit`);
            let noSession = false;
            try {
              void ctx.db;
            } catch (error) {
              noSession = error instanceof NoActiveSessionError;
            }
            return { status: 200, body: { noSession, noCurrent: factory.currentOrUndefined() === undefined, autocommit: row!.autocommit } };
          },
        },
      ]);
      const reply = await request(url, '/out');
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({ noSession: true, noCurrent: true, autocommit: true });
    },
  },
  {
    rules: [1],
    name: 'runs a read-only route in a READ ONLY transaction (a write fails with 25006), readOnly(req) per request',
    async run(t) {
      const readOnlyState = async (ctx: HandlerContext) => {
        const db = need(ctx.db);
        const [row] = await sql<{ ro: string }>(db.factory, `SELECT current_setting('transaction_read_only') AS ro`);
        let code: string | undefined;
        try {
          await sql(db.factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [uniqueLabel('ro')]);
        } catch (error) {
          code = sqlState(error);
        }
        // the failed write aborted the transaction: answer 4xx so it rolls back
        return { status: code ? 403 : 200, body: { readOnly: row!.ro, code: code ?? null } };
      };
      const { url } = await t.app(
        [
          { method: 'GET', path: '/route-ro', session: { readOnly: () => true }, handler: readOnlyState },
          { method: 'GET', path: '/ro', handler: readOnlyState },
        ],
        { readOnly: (req) => req.headers['x-read-only'] === '1' },
      );
      const routeLevel = await request(url, '/route-ro');
      const perRequest = await request(url, '/ro', { headers: { 'x-read-only': '1' } });
      const writable = await request(url, '/ro');
      expect([routeLevel.status, routeLevel.json]).toEqual([403, { readOnly: 'on', code: '25006' }]);
      expect([perRequest.status, perRequest.json]).toEqual([403, { readOnly: 'on', code: '25006' }]);
      expect([writable.status, writable.json]).toEqual([200, { readOnly: 'off', code: null }]);
    },
  },
  {
    rules: [1, 6],
    name: 'applies settings(req) as transaction-local settings that never reach the next request on the connection',
    async run(t) {
      const engine = t.fx.newEngine({ pool: { max: 1 } });
      const factory = sessionmaker(engine);
      const { url } = await t.app(
        [
          {
            method: 'GET',
            path: '/whoami',
            handler: async (ctx) => {
              const [row] = await sql(need(ctx.db).factory, `SELECT current_setting('app.user', true) AS "user", pg_backend_pid() AS pid`);
              return { status: 200, body: row };
            },
          },
        ],
        { factory, settings: (req) => (typeof req.headers['x-user'] === 'string' ? { 'app.user': req.headers['x-user'] } : undefined) },
      );
      const alice = await request(url, '/whoami', { headers: { 'x-user': 'alice' } });
      const nobody = await request(url, '/whoami');
      expect(alice.json.user).toBe('alice');
      expect(nobody.json.pid).toBe(alice.json.pid);
      expect(nobody.json.user || null).toBeNull();
    },
  },
  {
    rules: [1, 3, 6],
    name: 'keeps tenants apart under row-level security: 500 interleaved requests of two tenants over a pool of 2',
    async run(t) {
      const engine = t.fx.newEngine({ pool: { max: 2, acquireTimeoutMs: 30_000 } }, await t.fx.tenantRoleUrl());
      const factory = sessionmaker(engine);
      const { url } = await t.app(
        [
          {
            method: 'GET',
            path: '/rows',
            handler: async (ctx) => {
              const db = need(ctx.db);
              const first = await sql<{ tenant_id: number }>(db.factory, 'SELECT tenant_id FROM conf_tenant_rows');
              await sleep(Math.random() * 3);
              const second = await explicitSql<{ tenant_id: number }>(db, 'SELECT tenant_id FROM conf_tenant_rows');
              return { status: 200, body: { tenants: [...new Set([...first, ...second].map((r) => r.tenant_id))], rows: first.length } };
            },
          },
        ],
        { factory, settings: (req) => ({ 'app.tenant_id': String(req.headers['x-tenant']) }) },
      );
      const agent = new http.Agent({ keepAlive: true, maxSockets: 25 });
      try {
        const replies = await Promise.all(
          Array.from({ length: 500 }, async (_, i) => {
            const tenant = (i % 2) + 1;
            const reply = await request(url, '/rows', { headers: { 'x-tenant': String(tenant) }, agent });
            return { tenant, reply };
          }),
        );
        const wrong = replies.filter(({ tenant, reply }) => reply.status !== 200 || reply.json.rows !== 3 || JSON.stringify(reply.json.tenants) !== JSON.stringify([tenant]));
        expect(wrong.map(({ tenant, reply }) => ({ tenant, status: reply.status, body: reply.json }))).toEqual([]);
        expect(engine.stats().pool.size).toBeLessThanOrEqual(2);
      } finally {
        agent.destroy();
      }
    },
  },
  {
    rules: [5],
    name: 'readYourWrites: a committing request answers with its WAL position (cookie + header, also through a taken-over response); a read-only request bringing it back gets minLsn',
    async run(t) {
      // the "replica" is the primary itself: routing is not the point here, the carrier is
      const engine = t.fx.newEngine({ replicas: [t.fx.url], replicaOptions: { checkIntervalMs: 0 } });
      const factory = sessionmaker(engine);
      const { url } = await t.app(
        [
          {
            method: 'POST',
            path: '/ryw',
            handler: async () => {
              await sql(factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [uniqueLabel('ryw')]);
              return { status: 201, headers: { 'x-app': 'kept', 'set-cookie': 'app_sid=1; Path=/' }, body: { ok: true } };
            },
          },
          {
            method: 'POST',
            path: '/ryw-raw',
            handler: async (ctx) => {
              await sql(factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [uniqueLabel('ryw-raw')]);
              const res = ctx.hijack();
              res.writeHead(201, { 'content-type': 'text/plain' });
              res.end('saved');
              return { responded: true };
            },
          },
          {
            method: 'GET',
            path: '/ryw',
            handler: async (ctx) => {
              const db = need(ctx.db);
              await sql(factory, 'SELECT 1');
              return { status: 200, body: { minLsn: db.options.minLsn ?? null, readOnly: db.options.readOnly } };
            },
          },
          { method: 'POST', path: '/ryw-fail', handler: async () => ({ status: 422, body: { no: true } }) },
        ],
        { factory, readYourWrites: true, readOnly: (req) => req.headers['x-read'] === '1' },
      );
      for (const path of ['/ryw', '/ryw-raw']) {
        const posted = await request(url, path, { method: 'POST', body: {} });
        expect(posted.status, path).toBe(201);
        const lsn = posted.headers['x-sessionlocal-lsn'];
        expect(lsn, path).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
        expect(posted.headers['set-cookie'], path).toContain(`sl_lsn=${lsn}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax`);
        if (path === '/ryw') {
          expect(posted.headers['x-app']).toBe('kept');
          // the app's own cookie and the token both reach the client
          expect(posted.headers['set-cookie'], path).toContain('app_sid=1; Path=/');
        }
        const read = await request(url, '/ryw', { headers: { 'x-read': '1', cookie: `a=b; sl_lsn=${lsn}` } });
        expect(read.json, path).toEqual({ minLsn: lsn, readOnly: true });
      }
      // nothing committed (4xx rolls back, or no write): no token
      const failed = await request(url, '/ryw-fail', { method: 'POST', body: {} });
      expect(failed.headers['x-sessionlocal-lsn']).toBeUndefined();
      const plain = await request(url, '/ryw', { headers: { 'x-read': '1' } });
      expect([plain.json, plain.headers['set-cookie']]).toEqual([{ minLsn: null, readOnly: true }, undefined]);
    },
  },
];

/** `finish: 'after-response'`: the session lives until the streamed body ends. */
function afterResponseScenarios(): Scenario[] {
  const streamingRoute = (gate: Promise<void>, seen: { db?: Session; late?: unknown }): ConformanceRoute => ({
    method: 'GET',
    path: '/after',
    session: { finish: 'after-response' },
    handler: async (ctx) => {
      const db = need(ctx.db);
      seen.db = db;
      await sql(db.factory, 'INSERT INTO conf_items (label) VALUES ($1) RETURNING id', [label(ctx)]);
      async function* body() {
        yield Buffer.from('first\n');
        await gate;
        try {
          // implicit: the stream's code runs in the request's session, so it sees the uncommitted row
          const [row] = await sql<{ n: number }>(db.factory, `SELECT count(*)::int AS n FROM conf_items WHERE label = '${label(ctx)}'`);
          yield Buffer.from(`second ${row!.n} ${db.factory.currentOrUndefined() === db}\n`);
        } catch (error) {
          seen.late = error; // the client went away: the session was closed under the stream
        }
      }
      return { status: 200, headers: { 'content-type': 'text/plain' }, stream: Readable.from(body()) };
    },
  });
  return [
    {
      rules: [2],
      name: "keeps the session open until the stream ends with finish: 'after-response', then commits",
      async run(t) {
        const gate = deferred();
        const seen: { db?: Session; late?: unknown } = {};
        const { url } = await t.app([streamingRoute(gate.promise, seen)]);
        const name = uniqueLabel('after');
        const { response } = send(url, `/after?label=${name}`);
        const res = await response;
        expect(res.statusCode).toBe(200);
        const first = await new Promise<string>((resolve) => res.once('data', (chunk: Buffer) => resolve(chunk.toString())));
        expect(first).toBe('first\n');
        expect(seen.db?.state).toBe('active');
        expect(await t.fx.count('conf_items', name)).toBe(0);
        gate.resolve();
        const rest = await readBody(res);
        expect(rest).toBe('second 1 true\n');
        await until(async () => (await t.fx.count('conf_items', name)) === 1, 'commit after the stream ended');
        await until(() => seen.db?.state === 'closed', 'session closed');
      },
    },
    {
      rules: [2, 4, 6],
      name: "rolls back an 'after-response' stream when the client goes away mid-stream",
      async run(t) {
        const gate = deferred();
        const seen: { db?: Session; late?: unknown } = {};
        const { url } = await t.app([streamingRoute(gate.promise, seen)]);
        const name = uniqueLabel('after-abort');
        const { req, response } = send(url, `/after?label=${name}`);
        req.on('error', () => undefined);
        const res = await response;
        res.on('error', () => undefined);
        await new Promise((resolve) => res.once('data', resolve));
        req.destroy();
        await until(() => seen.db?.signal.aborted === true, 'signal aborted');
        await until(() => seen.db?.state === 'closed', 'session closed');
        gate.resolve();
        expect(await t.fx.count('conf_items', name)).toBe(0);
      },
    },
  ];
}

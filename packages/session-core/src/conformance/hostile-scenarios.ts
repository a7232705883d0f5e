import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataTypes, type ModelStatic, type Model } from 'sequelize';
import { expect } from 'vitest';
import { Session } from '../session.js';
import { sessionmaker, type SessionFactory } from '../sessionmaker.js';
import { uniqueLabel, type Fixture } from './fixture.js';
import { request, send } from './http.js';
import type { HandlerContext } from './kit.js';
import type { Scenario } from './scenarios.js';

// Handlers that misbehave (docs/semantics.md, "Outcome of a request"): each ends in one
// well-formed response consistent with what was committed, the process up, nothing left open.

function need(db: Session | null | undefined): Session {
  if (!(db instanceof Session)) throw new Error('the adapter gave the handler no session');
  return db;
}

const insert = (factory: SessionFactory, label: string) => factory.engine.sequelize.query('INSERT INTO conf_items (label) VALUES ($1) RETURNING id', { bind: [label] });

/** What a handler observed after it answered, by label (read by the scenario after the response). */
const observed = new Map<string, unknown>();

function errorName(error: unknown): string {
  return error instanceof Error ? (error.constructor.name === 'Error' && (error as { code?: string }).code ? String((error as { code?: string }).code) : error.constructor.name) : String(error);
}

async function settle<T>(fn: () => Promise<T>): Promise<string> {
  try {
    await fn();
    return 'ok';
  } catch (error) {
    return errorName(error);
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(10);
  }
}

/** 2xx only if committed; a committed request never answers 5xx. */
async function expectConsistent(fx: Fixture, status: number, label: string): Promise<void> {
  const rows = await fx.count('conf_items', label);
  if (status >= 200 && status < 300) expect(rows, `${status} answered but the row is ${rows ? 'there' : 'missing'}`).toBe(1);
  if (status >= 500) expect(rows, `${status} answered for committed work`).toBe(0);
}

function label(ctx: HandlerContext): string {
  return String(ctx.query.label);
}

let itemModel: ModelStatic<Model> | undefined;
function confItem(fx: Fixture): ModelStatic<Model> {
  itemModel ??= fx.engine.sequelize.define('ConfItem', { label: { type: DataTypes.TEXT, allowNull: false } }, { tableName: 'conf_items', timestamps: false });
  return itemModel;
}

export const hostileScenarios: Scenario[] = [
  {
    rules: [2, 3],
    name: 'a handler that answered and keeps querying: the client gets its 2xx, later statements are refused or committed with it, never lost',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/answer-then-query',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            ctx.respond({ status: 201, body: { ok: true } });
            await sleep(5);
            observed.set(label(ctx), await settle(() => insert(factory, `${label(ctx)}-late`)));
            return { responded: true };
          },
        },
      ]);
      const name = uniqueLabel('late');
      const reply = await request(url, `/answer-then-query?label=${name}`, { method: 'POST' });
      expect(reply.status).toBe(201);
      expect(reply.json).toEqual({ ok: true });
      await until(() => observed.has(name), 'the late statement');
      await expectConsistent(t.fx, reply.status, name);
      const late = await t.fx.count('conf_items', `${name}-late`);
      // Express/Fastify answered before the handler settled: the late statement is refused. Koa
      // answers when the handler settles: the late statement is part of the committed transaction.
      expect([observed.get(name), late]).toSatisfy(([outcome, rows]: [unknown, number]) => (outcome === 'SessionClosedError' && rows === 0) || (outcome === 'ok' && rows === 1));
    },
  },
  {
    rules: [2, 3],
    name: 'a handler that answered then threw, or answered twice: one well-formed response consistent with what was committed',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/answer-then-throw',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            ctx.respond({ status: 201, body: { ok: true } });
            throw new Error('after the answer');
          },
        },
        {
          method: 'POST',
          path: '/answer-twice',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            ctx.respond({ status: 201, body: { first: true } });
            observed.set(label(ctx), await settle(async () => ctx.respond({ status: 200, body: { second: true } })));
            return { responded: true };
          },
        },
      ]);
      for (const path of ['/answer-then-throw', '/answer-twice']) {
        const name = uniqueLabel('twice');
        const reply = await request(url, `${path}?label=${name}`, { method: 'POST' });
        expect([200, 201, 500], path).toContain(reply.status);
        expect(typeof reply.text, path).toBe('string');
        await expectConsistent(t.fx, reply.status, name);
      }
    },
  },
  {
    rules: [2, 3],
    name: "the handler's own db.close() is an explicit rollback: its 200 stands (signal read or not) and nothing is saved",
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/close',
          handler: async (ctx) => {
            const db = need(ctx.db);
            if (ctx.query.signal) void db.signal;
            await insert(factory, label(ctx));
            await db.close();
            return { status: 200, body: { closed: db.state } };
          },
        },
      ]);
      for (const query of ['', '&signal=1']) {
        const name = uniqueLabel('close');
        const reply = await request(url, `/close?label=${name}${query}`, { method: 'POST' });
        expect(reply.status, query).toBe(200);
        expect(reply.json).toEqual({ closed: 'closed' });
        expect(await t.fx.count('conf_items', name)).toBe(0);
      }
    },
  },
  {
    rules: [2],
    name: 'with expireOnCommit a model instance as the JSON body is serialized before COMMIT: 201 with its attributes',
    async run(t) {
      const Item = confItem(t.fx);
      const factory = sessionmaker(t.fx.engine, { expireOnCommit: true });
      const { url } = await t.app([{ method: 'POST', path: '/expiring', handler: async (ctx) => ({ status: 201, body: await Item.create({ label: label(ctx) }) }) }], { factory });
      const name = uniqueLabel('expire');
      const reply = await request(url, `/expiring?label=${name}`, { method: 'POST' });
      expect(reply.status).toBe(201);
      expect(reply.json).toMatchObject({ label: name });
      expect(await t.fx.count('conf_items', name)).toBe(1);
    },
  },
  {
    rules: [2, 3],
    name: "code running while the response is written (a 'finish' listener) is outside the transaction: its statements throw SessionClosedError",
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/on-finish',
          handler: async (ctx) => {
            const name = label(ctx);
            await insert(factory, name);
            ctx.raw.once('finish', () => {
              void settle(() => insert(factory, `${name}-finish`)).then((outcome) => observed.set(name, outcome));
            });
            return { status: 201, body: { ok: true } };
          },
        },
      ]);
      const name = uniqueLabel('finish');
      const reply = await request(url, `/on-finish?label=${name}`, { method: 'POST' });
      expect(reply.status).toBe(201);
      await until(() => observed.has(name), "the 'finish' listener");
      expect(observed.get(name)).toBe('SessionClosedError');
      expect(await t.fx.count('conf_items', `${name}-finish`)).toBe(0);
      await expectConsistent(t.fx, reply.status, name);
    },
  },
  {
    rules: [2, 8],
    name: 'a response the handler writes itself (hijack) after a write whose COMMIT fails: 500, never its 2xx; a writer waiting for drain goes on',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/hijack',
          handler: async (ctx) => {
            const name = label(ctx);
            await insert(factory, name);
            if (ctx.query.fail) await factory.engine.sequelize.query('INSERT INTO conf_unique (k) VALUES (424242), (424242)');
            const res = ctx.hijack();
            res.writeHead(200, { 'content-type': 'text/plain' });
            if (ctx.query.stream) {
              // back-pressure: a streaming writer awaits 'drain' while the first byte waits for COMMIT
              const chunk = 'x'.repeat(64 * 1024);
              for (let i = 0; i < 8; i++) if (!res.write(chunk)) await once(res, 'drain');
            }
            res.end('saved!');
            observed.set(name, 'done');
            return { responded: true };
          },
        },
      ]);
      for (const query of ['&fail=1', '&fail=1&stream=1', '', '&stream=1']) {
        const name = uniqueLabel('hijack');
        const reply = await request(url, `/hijack?label=${name}${query}`, { method: 'POST' });
        if (query.includes('fail')) {
          expect(reply.status, query).toBe(500);
          expect(reply.json?.error, query).toBe('commit_failed');
        } else {
          expect(reply.status, query).toBe(200);
          expect(reply.text.endsWith('saved!'), query).toBe(true);
        }
        await until(() => observed.get(name) === 'done', `the hijacking handler finished (${query})`);
        await expectConsistent(t.fx, reply.status, name);
      }
    },
  },
  {
    rules: [2, 8],
    name: 'a response the handler writes itself from a timer, after the handler returned: 500 when COMMIT failed (never its 2xx), its 2xx when committed',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/late-raw',
          handler: async (ctx) => {
            const name = label(ctx);
            await insert(factory, name);
            if (ctx.query.fail) await factory.engine.sequelize.query('INSERT INTO conf_unique (k) VALUES (434343), (434343)');
            const res = ctx.hijack();
            // the write comes after the handler (Koa: the middleware chain) settled
            setTimeout(() => {
              try {
                res.writeHead(200, { 'content-type': 'text/plain' });
                res.end('saved!');
                observed.set(name, 'written');
              } catch (error) {
                observed.set(name, errorName(error));
              }
            }, 60);
            return { responded: true };
          },
        },
      ]);
      for (const query of ['&fail=1', '']) {
        const name = uniqueLabel('late-raw');
        const reply = await request(url, `/late-raw?label=${name}${query}`, { method: 'POST' });
        if (query) {
          expect(reply.status, query).toBe(500);
          expect(reply.json?.error, query).toBe('commit_failed');
        } else {
          expect(reply.status, query).toBe(200);
          expect(reply.text, query).toBe('saved!');
        }
        await until(() => observed.has(name), `the late writer ran (${query})`);
        await expectConsistent(t.fx, reply.status, name);
      }
    },
  },
  {
    rules: [2, 7],
    name: 'two registrations (two engines) commit in registration order; a failed COMMIT answers one well-formed 500: commit_failed when nothing was saved, partially_committed naming the registrations when the first had committed',
    async run(t) {
      const { factory } = t.fx;
      const other = sessionmaker(t.fx.newEngine({ pool: { max: 4 } }));
      const failIn = (ctx: HandlerContext, which: string, f: SessionFactory) =>
        ctx.query.fail === which ? f.engine.sequelize.query('INSERT INTO conf_unique (k) VALUES ($1), ($1)', { bind: [which === 'db' ? 454545 : 464646] }) : undefined;
      const { url, errors } = await t.app(
        [
          {
            method: 'POST',
            path: '/two',
            handler: async (ctx) => {
              const name = label(ctx);
              await insert(factory, name);
              await failIn(ctx, 'db', factory);
              await insert(other, `${name}-other`);
              await failIn(ctx, 'otherDb', other);
              if (ctx.query.slow) {
                await sleep(400);
                observed.set(name, 'settled');
              }
              if (!ctx.query.raw) return { status: 201, body: { ok: true } };
              const res = ctx.hijack();
              res.writeHead(201, { 'content-type': 'text/plain' });
              res.end('saved!');
              return { responded: true };
            },
          },
        ],
        undefined,
        [{ factory: other, name: 'otherDb' }],
      );
      for (const raw of ['', '&raw=1']) {
        for (const fail of ['', 'db', 'otherDb']) {
          const name = uniqueLabel('two');
          const what = `fail=${fail || 'none'}${raw}`;
          const reply = await request(url, `/two?label=${name}&fail=${fail}${raw}`, { method: 'POST' });
          const saved = [await t.fx.count('conf_items', name), await t.fx.count('conf_items', `${name}-other`)];
          if (!fail) {
            expect(reply.status, what).toBe(201);
            expect(saved, what).toEqual([1, 1]);
          } else if (fail === 'db') {
            expect([reply.status, reply.json?.error], what).toEqual([500, 'commit_failed']);
            expect(saved, what).toEqual([0, 0]);
          } else {
            expect([reply.status, reply.json], what).toEqual([500, { error: 'partially_committed', message: expect.stringContaining('otherDb'), committed: ['db'], failed: ['otherDb'] }]);
            expect(saved, what).toEqual([1, 0]);
          }
        }
      }
      // each failure reached the framework's error reporting
      expect(errors.length).toBeGreaterThanOrEqual(4);
      // a client gone mid-handler: both registrations roll back, both connections come back
      const gone = uniqueLabel('two-gone');
      const { req, response } = send(url, `/two?label=${gone}&fail=&slow=1`, { method: 'POST' });
      response.catch(() => undefined); // ECONNRESET: the client left
      await sleep(150);
      req.destroy();
      await until(() => observed.has(gone), 'the slow handler settled');
      await sleep(100);
      expect([await t.fx.count('conf_items', gone), await t.fx.count('conf_items', `${gone}-other`)]).toEqual([0, 0]);
    },
  },
  {
    rules: [3],
    name: 'a thrown error rolls back whatever status the app error handler answers, and a failed COMMIT reaches the framework error reporting',
    async run(t) {
      const { factory } = t.fx;
      const { url, errors } = await t.app([
        {
          method: 'POST',
          path: '/throw-handled',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            throw Object.assign(new Error('handled by the app'), { answerWith: 200 });
          },
        },
        {
          method: 'POST',
          path: '/commit-fails',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            await factory.engine.sequelize.query('INSERT INTO conf_unique (k) VALUES (434343), (434343)');
            return { status: 201, body: { ok: true } };
          },
        },
      ]);
      const name = uniqueLabel('handled');
      const reply = await request(url, `/throw-handled?label=${name}`, { method: 'POST' });
      expect(reply.status).toBe(200);
      expect(reply.json).toEqual({ handled: true });
      expect(await t.fx.count('conf_items', name)).toBe(0);
      errors.length = 0;
      const failed = uniqueLabel('reported');
      const second = await request(url, `/commit-fails?label=${failed}`, { method: 'POST' });
      expect(second.status).toBe(500);
      await until(() => JSON.stringify(errors).includes('COMMIT_FAILED'), 'the failed COMMIT in the framework error reporting');
    },
  },
  {
    rules: [2, 6],
    name: 'engine.dispose() under a request in flight: its work is rolled back and the client gets 503, never the handler 2xx',
    async run(t) {
      const engine = t.fx.newEngine({ pool: { max: 2 } });
      const factory = sessionmaker(engine);
      const { url } = await t.app(
        [
          {
            method: 'POST',
            path: '/slow-write',
            handler: async (ctx) => {
              await insert(factory, label(ctx));
              await sleep(400);
              return { status: 201, body: { ok: true } };
            },
          },
        ],
        { factory },
      );
      const name = uniqueLabel('dispose');
      const pending = request(url, `/slow-write?label=${name}`, { method: 'POST' });
      await sleep(150);
      await engine.dispose({ timeoutMs: 50 });
      const reply = await pending;
      // 503 shutting_down when the handler answers after the rollback; 500 when the disposal cut
      // the handler's own statement first (a slow machine): never the handler's 2xx, nothing saved
      expect([500, 503]).toContain(reply.status);
      if (reply.status === 503) expect(reply.json?.error).toBe('shutting_down');
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
];

/**
 * Everything framework-specific, in one table: how each action of a program is spelled in
 * Express 5, Koa 3 and Fastify 5, and how each app is wired (adapter, body parser, routes, error
 * handler). The interpreter (interpreter.ts) only calls the `Io` built here.
 *
 * | action                | Express 5                               | Koa 3                                      | Fastify 5                                  |
 * |-----------------------|-----------------------------------------|--------------------------------------------|--------------------------------------------|
 * | respond (json)        | `res.status(s).json(b)`                 | `ctx.status = s; ctx.body = b`             | `reply.code(s).send(b)`                    |
 * | respond twice         | second `res.json` (throws when sent)    | second assignment (last one wins)          | second `reply.send` (Fastify warns)        |
 * | stream                | `res.write()` + await `'drain'`, `end()`| `ctx.body = Readable.from(generator)`      | `reply.send(Readable.from(generator))`     |
 * | hijack                | raw `res.writeHead` + `res.end`         | `ctx.respond = false` + raw `ctx.res` writes | `reply.hijack()` + raw `reply.raw` writes |
 * | work after responding | runs after the response started         | runs BEFORE the response (Koa answers after the middleware returns) | runs after the response started |
 * | throw                 | async handler rejects -> error middleware | rejects -> outermost try/catch middleware | rejects -> `setErrorHandler`             |
 * | raw `finish` listener | `res.on('finish')`                      | `ctx.res.on('finish')`                     | `reply.raw.on('finish')`                   |
 * | finish: after-response| `sessionLocal.route({ finish })`        | `sessionLocal.route({ finish })`           | `config: { sessionLocal: { finish } }`     |
 *
 * Parity (invariant 5) excludes what a framework cannot express the same way (see `parityOf`):
 * Koa has no early response, so Koa is left out of the comparison for programs that keep working
 * after responding, throw after responding or respond twice.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal as expressSessionLocal } from '@sessionlocal/adapter-express';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { sessionLocal as koaSessionLocal } from '@sessionlocal/adapter-koa';
import type { Session } from '@sessionlocal/session-core';
import express, { type NextFunction, type Request, type Response } from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { type Io, type Models, type RunRecord, runProgram, within } from './interpreter.js';
import type { Program } from './program.js';

export const ADAPTERS = ['express', 'koa', 'fastify'] as const;
export type AdapterName = (typeof ADAPTERS)[number];

/** What an app needs: the models, the registry of running programs, and the settings that tag every statement with its request. */
export interface AppEnv {
  models: Models;
  runs: Map<string, RunRecord>;
}

export interface RunningApp {
  url: string;
  close(): Promise<void>;
}

const RID = 'x-fuzz-rid';
const KEY = 'x-fuzz-key';
const FROM_ERROR_HANDLER = 'x-fuzz-error-handler';
/** Every statement of a request's session records this setting (column default), so the oracle can tell where it ran. */
const settings = (req: { headers: http.IncomingHttpHeaders }) => ({ 'fuzz.rid': String(req.headers[RID] ?? '') });

function recordOf(env: AppEnv, headers: http.IncomingHttpHeaders): RunRecord {
  const rec = env.runs.get(String(headers[RID]));
  if (!rec) throw new Error(`no program registered for ${String(headers[RID])}`);
  return rec;
}

/** The twin request of a raced `findOrCreate`: meet the main request at the barrier, then race. */
async function twin(env: AppEnv, headers: http.IncomingHttpHeaders): Promise<{ created: boolean }> {
  const key = String(headers[KEY]);
  const main = env.runs.get(String(headers[RID]).replace(/-twin$/, ''));
  await main?.barrier(key);
  const [, created] = await env.models.Key.findOrCreate({ where: { key }, defaults: { rid: String(headers[RID]), seq: 0 } });
  return { created };
}

function errorStatusOf(env: AppEnv, headers: http.IncomingHttpHeaders): number {
  return env.runs.get(String(headers[RID]))?.program.errorStatus ?? 500;
}

/** Write `chunks()` with `write()`, awaiting `'drain'` (at most 2 s, recorded as a hang) when it returns false. */
async function writeWithDrain(res: http.ServerResponse, rec: RunRecord, chunks: () => AsyncGenerator<Buffer>): Promise<void> {
  for await (const chunk of chunks()) {
    if (res.writableEnded || res.destroyed) return;
    if (!res.write(chunk) && !(await within(once(res, 'drain'), 2000))) {
      rec.trace.hangs.push("'drain' never came (2 s) while streaming with write()");
      return;
    }
  }
  if (!res.writableEnded) res.end();
}

/** A stream body the framework pipes; its producer is background work until the stream closed. */
function streamBody(rec: RunRecord, chunks: () => AsyncGenerator<Buffer>): Readable {
  const stream = Readable.from(chunks(), { objectMode: false });
  rec.background.push(new Promise((resolve) => stream.once('close', resolve)));
  return stream;
}

function listen(server: http.Server): Promise<RunningApp> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Express 5

function expressIo(req: Request, res: Response, rec: RunRecord): Io {
  return {
    db: req.db,
    raw: res,
    sendsAt: () => true,
    json: (status, body) => void res.status(status).json(body),
    hijack: (status, body) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    },
    stream: async (status, chunks) => {
      res.status(status).setHeader('content-type', 'text/plain');
      await writeWithDrain(res, rec, chunks);
    },
  };
}

async function expressApp(env: AppEnv): Promise<RunningApp> {
  const app = express();
  app.set('env', 'test'); // Express's final handler logs every error otherwise
  // a failed COMMIT is part of the programs: Express's default report (stderr) would only be noise here
  app.use(expressSessionLocal({ factory: env.models.factory, settings, onCommitError: () => undefined }));
  app.use(express.json());
  const handler = async (req: Request, res: Response) => {
    const rec = recordOf(env, req.headers);
    await runProgram(rec, expressIo(req, res, rec), env.models);
  };
  app.post('/run', handler);
  app.post('/run-after', expressSessionLocal.route({ finish: 'after-response' }), handler);
  app.post('/twin', async (req, res) => void res.json(await twin(env, req.headers)));
  // Behaviour 13: the adapter's error middleware, before the app's error handlers (Express hides a
  // handler's error from the adapter otherwise)
  app.use(expressSessionLocal.errors());
  app.use((error: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error); // Express's default: it closes the connection
    res
      .status(errorStatusOf(env, req.headers))
      .set(FROM_ERROR_HANDLER, '1')
      .json({ error: String((error as Error)?.message) });
  });
  return listen(http.createServer(app));
}

// ---------------------------------------------------------------------------------------------
// Koa 3

function koaIo(ctx: Koa.Context, rec: RunRecord): Io {
  return {
    db: ctx.db,
    raw: ctx.res,
    sendsAt: (style) => style === 'hijack',
    json: (status, body) => {
      ctx.status = status;
      ctx.body = body;
    },
    hijack: (status, body) => {
      ctx.respond = false;
      ctx.res.writeHead(status, { 'content-type': 'application/json' });
      ctx.res.end(JSON.stringify(body));
    },
    stream: async (status, chunks) => {
      ctx.status = status;
      ctx.type = 'text/plain';
      ctx.body = streamBody(rec, chunks);
    },
  };
}

async function koaApp(env: AppEnv): Promise<RunningApp> {
  const app = new Koa();
  app.silent = true;
  // the app's error handler: outermost, as Koa apps do
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      if (ctx.headerSent || !ctx.writable) return;
      ctx.status = errorStatusOf(env, ctx.headers);
      ctx.set(FROM_ERROR_HANDLER, '1');
      ctx.body = { error: String((error as Error)?.message) };
    }
  });
  app.use(koaSessionLocal({ factory: env.models.factory, settings }));
  app.use(bodyParser());
  const router = new Router();
  const handler = async (ctx: Koa.Context) => {
    const rec = recordOf(env, ctx.headers);
    await runProgram(rec, koaIo(ctx, rec), env.models);
  };
  router.post('/run', handler);
  router.post('/run-after', koaSessionLocal.route({ finish: 'after-response' }), handler);
  router.post('/twin', async (ctx) => {
    ctx.body = await twin(env, ctx.headers);
  });
  app.use(router.routes());
  return listen(http.createServer(app.callback()));
}

// ---------------------------------------------------------------------------------------------
// Fastify 5

async function fastifyApp(env: AppEnv): Promise<RunningApp> {
  const app = Fastify({ logger: false });
  await app.register(fastifySessionLocal, { factory: env.models.factory, settings });
  app.setErrorHandler((error, request, reply) => {
    if (reply.raw.headersSent) return; // as the Express and Koa handlers: too late to answer
    void reply
      .code(errorStatusOf(env, request.headers))
      .header(FROM_ERROR_HANDLER, '1')
      .send({ error: String((error as Error)?.message) });
  });
  const handler = async (request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) => {
    const rec = recordOf(env, request.headers);
    const io: Io = {
      db: request.db as Session,
      raw: reply.raw,
      sendsAt: () => true,
      json: (status, body) => void reply.code(status).send(body),
      hijack: (status, body) => {
        reply.hijack();
        reply.raw.writeHead(status, { 'content-type': 'application/json' });
        reply.raw.end(JSON.stringify(body));
      },
      stream: async (status, chunks) => {
        void reply.code(status).type('text/plain').send(streamBody(rec, chunks));
      },
    };
    await runProgram(rec, io, env.models);
    return reply;
  };
  app.post('/run', handler);
  app.post('/run-after', { config: { sessionLocal: { finish: 'after-response' } } }, handler);
  app.post('/twin', async (request) => twin(env, request.headers));
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => app.close() };
}

/** Start the app of one adapter. */
export function startApp(adapter: AdapterName, env: AppEnv): Promise<RunningApp> {
  return adapter === 'express' ? expressApp(env) : adapter === 'koa' ? koaApp(env) : fastifyApp(env);
}

/** The header an app's error handler sets, so the oracle knows who chose the status. */
export const ERROR_HANDLER_HEADER = FROM_ERROR_HANDLER;
export const RID_HEADER = RID;
export const KEY_HEADER = KEY;

/**
 * Which adapters invariant 5 compares for a program, and whether the steps after responding
 * count: what a framework cannot express the same way is left out, with the reason.
 */
export function parityOf(program: Program): { adapters: AdapterName[]; afterRespond: boolean; note?: string } {
  if (program.ending.kind !== 'respond') return { adapters: [...ADAPTERS], afterRespond: false };
  const { after, thenThrow, respond } = program.ending;
  const laterWork = after.length > 0 || thenThrow || respond.twice;
  if (!laterWork) return { adapters: [...ADAPTERS], afterRespond: false };
  // after-response routes: work after responding races the COMMIT that 'finish' starts, by design
  if (program.finish === 'after-response') return { adapters: [], afterRespond: false, note: "work after responding on a finish: 'after-response' route races its COMMIT by design" };
  return {
    adapters: ['express', 'fastify'],
    afterRespond: !respond.twice,
    note: 'Koa has no early response (the body is written after the middleware returns): left out',
  };
}

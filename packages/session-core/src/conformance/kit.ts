import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { Http2Server, Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import type { Sequelize } from 'sequelize';
import type { EngineOptions } from '../config.js';
import type { RequestSessionOptions, RouteSessionOptions } from '../request-scope.js';
import type { Session } from '../session.js';

/** What the suite's `settings(req)` / `readOnly(req)` read: Express `req`, Koa `ctx` and Fastify `request` all have it. */
export interface RequestLike {
  headers: IncomingHttpHeaders;
}

/** The framework-neutral view of a request that a scenario handler gets. */
export interface HandlerContext {
  /** `req.db` / `ctx.db` / `request.db`, read when used (on an opted-out route reading it throws `NoActiveSessionError`). */
  readonly db: Session | null | undefined;
  body: unknown;
  headers: IncomingHttpHeaders;
  query: Record<string, unknown>;
  /** Answer now, the framework's own way (Express `res.status().json()`, Koa `ctx.status`/`ctx.body`, Fastify `reply.code().send()`); the handler goes on. */
  respond(result: JsonResult): void;
  /** Take the response over: Express `res`, Koa `ctx.respond = false` + `ctx.res`, Fastify `reply.hijack()` + `reply.raw`. */
  hijack(): ServerResponse;
  /** Node's response, not taken over (to listen for 'finish'). */
  readonly raw: ServerResponse;
}

/** A JSON reply. */
export type JsonResult = { status: number; headers?: Record<string, string>; body?: unknown };

/** A JSON reply, a streamed one (`stream` piped to the client), or `{ responded: true }` when the handler answered itself (`respond`, `hijack`). */
export type HandlerResult = JsonResult | { status: number; headers?: Record<string, string>; stream: Readable } | { responded: true };

export type Handler = (ctx: HandlerContext) => Promise<HandlerResult>;

/** One route of a scenario app. */
export interface ConformanceRoute {
  method: 'GET' | 'POST';
  path: string;
  /** Per-route options: Express/Koa `sessionLocal.route(session)`, Fastify `config: { sessionLocal: session }`. */
  session?: RouteSessionOptions<RequestLike>;
  handler: Handler;
}

/** What an adapter's `createApp` gets: the adapter options and the routes to map to its framework. */
export interface ConformanceKit {
  /** Pass these to the adapter unchanged (`sessionLocal(kit.options)` / `register(fastifySessionLocal, kit.options)`). */
  options: RequestSessionOptions<RequestLike>;
  /** Further registrations (other engines, each with its own `name`): mount each right after `options`, in this order. */
  registrations: RequestSessionOptions<RequestLike>[];
  /** Install a JSON body parser after the adapter, then these routes. A thrown handler error goes to the framework. */
  routes: ConformanceRoute[];
  /**
   * Call it from the framework's own error handling with each error. Then, when the error has a
   * numeric `answerWith`, answer that status with JSON `{ handled: true }` (an app error handler
   * that answers 2xx); else let the framework answer as it does by default.
   */
  onError(error: unknown): void;
  /**
   * Requests with content-type `CALLBACK_JSON` must be read with this (installed after the adapter):
   * it calls back from raw stream events and binds no async context, as body-parser 1.x, multer or
   * busboy do. Express: a middleware; Koa: a middleware; Fastify: a `preParsing` hook.
   */
  readBodyWithCallbacks: typeof readBodyWithCallbacks;
  /** Listen on 127.0.0.1 (random port); `close()` ends open connections and stops the server. */
  listen(server: Server | Http2Server): Promise<ConformanceApp>;
  /**
   * Serve HTTP/2 cleartext (h2c, prior knowledge) instead of HTTP/1.1: Fastify `{ http2: true }`,
   * Koa `http2.createServer(app.callback())`, Express `http2.createServer(app)` (Node's
   * compatibility API). Set only for adapters that declare `http2: true`.
   */
  http2: boolean;
}

/** A running scenario app. */
export interface ConformanceApp {
  url: string;
  close(): Promise<void>;
}

/** What an adapter's test file passes to `runConformanceSuite`. */
export interface ConformanceAdapter<S extends Sequelize = Sequelize> {
  name: string;
  createApp(kit: ConformanceKit): Promise<ConformanceApp>;
  /**
   * `true`: also run the HTTP/2 scenarios (client RST_STREAM before, during and after the
   * response) with `kit.http2` set. A string: why the framework cannot (shown as a skipped test).
   */
  http2?: true | string;
  /** Options every engine of the run is made with, e.g. `{ sequelizeClass }` to run the suite over sequelize-typescript's `Sequelize`. */
  engineOptions?: Pick<EngineOptions<S>, 'sequelizeClass' | 'sequelize'>;
}

/** Listen on 127.0.0.1 on a free port. */
export function listen(server: Server | Http2Server): Promise<ConformanceApp> {
  // an HTTP/2 server has no closeAllConnections(): close its sessions on close
  const sessions = new Set<Http2Session>();
  if (!('closeAllConnections' in server)) server.on('session', (session: Http2Session) => sessions.add(session.once('close', () => sessions.delete(session))));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            if ('closeAllConnections' in server) server.closeAllConnections();
            for (const session of sessions) session.destroy();
          }),
      });
    });
  });
}

/** The content type whose body the adapter's app reads with `kit.readBodyWithCallbacks`. */
export const CALLBACK_JSON = 'application/x-callback-json';

/** Read a whole stream, calling back from its `end` event with no async context bound. */
export function readBodyWithCallbacks(stream: NodeJS.ReadableStream, callback: (error: Error | null, text?: string) => void): void {
  const chunks: Buffer[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('error', (error: Error) => callback(error));
  stream.on('end', () => callback(null, Buffer.concat(chunks).toString('utf8')));
}

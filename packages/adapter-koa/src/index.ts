import { Readable } from 'node:stream';
import type { Context, Middleware, Next } from 'koa';
import type { Session } from '@sessionlocal/session-core';
import {
  checkRequestSessionOptions,
  mount,
  reportCommitFailure,
  responseHolder,
  runInScope,
  runRoute,
  type Mounted,
  type ResponseHolder,
  type RequestSessionOptions,
  type RouteSessionOptions,
} from '@sessionlocal/session-core/adapter';

/** Options of `sessionLocal` (also named `KoaSessionLocalOptions`); `settings(ctx)` and `readOnly(ctx)` get the Koa context (see the core README). */
export type SessionLocalOptions = RequestSessionOptions<Context>;
export type { SessionLocalOptions as KoaSessionLocalOptions };
/** `false` opts a route out; an object changes `commitWhen`, `finish`, `settings`, `readOnly` for it. */
export type SessionLocalRouteOptions = RouteSessionOptions<Context>;

declare module 'koa' {
  interface DefaultContext {
    /** The request's session; on a route opted out with `sessionLocal.route(false)` reading it throws `NoActiveSessionError`. */
    db: Session;
  }
}

/**
 * Koa middleware: one lazily opened database session per request as `ctx.db`, committed after
 * the downstream middleware and before Koa writes the response when the status passes
 * `commitWhen`, rolled back otherwise (errors are rethrown to Koa), always closed. Mount it
 * inside (after) your error-handling middleware: an error it catches is then already rolled back.
 * @example
 * app.use(sessionLocal({ factory: SessionLocal }));
 * app.use(bodyParser());
 * router.post('/items', async (ctx) => { ctx.status = 201; ctx.body = await Item.create(ctx.request.body); });
 */
export function sessionLocal(options: SessionLocalOptions): Middleware {
  checkRequestSessionOptions(options);
  const hold = responseHolder();
  return async function sessionLocalMiddleware(ctx: Context, next: Next): Promise<void> {
    const mounted = mount(ctx, options, ctx);
    // raw writes (`ctx.respond = false`) and Koa's own write wait for COMMIT, and run in the scope
    hold(
      ctx.res,
      () => mounted.scope,
      (result) => reportCommitFailure(options, ctx, result, (error) => ctx.app.emit('error', error, ctx)),
    );
    mounted.scope?.watch(ctx.res);
    try {
      await runInScope(mounted, next);
    } catch (error) {
      await mounted.scope?.end({ status: 500, error });
      throw error;
    }
    await finish(ctx, mounted, hold);
  };
}

/**
 * Per-route options, as route middleware (e.g. on a `@koa/router` route) after `app.use(sessionLocal(...))`.
 * @example
 * router.get('/ping', sessionLocal.route(false), (ctx) => { ctx.body = { pong: true }; });
 * router.get('/report', sessionLocal.route({ readOnly: () => true }), report);
 */
sessionLocal.route = function route(routeOptions: SessionLocalRouteOptions): Middleware {
  return function sessionLocalRoute(ctx: Context, next: Next): Promise<void> {
    return runRoute(ctx, ctx, routeOptions, (scope) => scope.watch(ctx.res), next);
  };
};

/** The same middleware under the name pattern shared by the three adapters. */
export const koaSessionLocal = sessionLocal;

/** Commit before Koa writes the status line; on a failed COMMIT answer the error response instead. */
async function finish(ctx: Context, mounted: Mounted<Context>, hold: ResponseHolder): Promise<void> {
  const scope = mounted.scope;
  if (!scope) return;
  // Koa pipes a stream body after this middleware returned: its reads run in the scope (in the
  // session with 'after-response', where statements throw SessionClosedError otherwise)
  if (ctx.body instanceof Readable) scope.bindReads(ctx.body);
  if (scope.finish === 'after-response' || scope.endIfUntouched()) return;
  // a raw response (`ctx.respond = false`) not written yet: as in Express and Fastify its first byte
  // decides (the holder ends the scope then, or the client leaving does), not the settled chain
  if (ctx.respond === false && hold.unwritten(ctx.res)) return;
  // a JSON body is serialized now, inside the transaction (expired instances read after COMMIT throw)
  if (ctx.respond !== false && isJsonBody(ctx.body)) ctx.body = JSON.stringify(ctx.body);
  const result = await scope.end({ status: ctx.status });
  const { response } = result;
  if (!response || ctx.respond === false) return; // a raw response was held and answered by the holder
  reportCommitFailure(mounted.options, ctx, result, (error) => ctx.app.emit('error', error, ctx));
  const body = ctx.body as { destroy?: () => void } | null | undefined;
  if (typeof body?.destroy === 'function') body.destroy();
  for (const header of ctx.res.getHeaderNames()) ctx.remove(header);
  ctx.status = response.status;
  ctx.set(response.headers);
  ctx.body = response.body;
}

function isJsonBody(body: unknown): boolean {
  return body !== null && typeof body === 'object' && !Buffer.isBuffer(body) && !(body instanceof Readable);
}

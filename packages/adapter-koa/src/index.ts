import { Readable } from 'node:stream';
import type { Context, Middleware, Next } from 'koa';
import {
  checkRequestSessionOptions,
  openRequestScope,
  reopenRequestScope,
  runOutsideSession,
  type RequestScope,
  type RequestSessionOptions,
  type RouteSessionOptions,
  type Session,
} from '@sessionlocal/session-core';

declare module 'koa' {
  interface DefaultContext {
    /** The request's database session (`null` on a route opted out with `sessionLocal.route(false)`). */
    db: Session;
  }
}

/** Options of `sessionLocal`; `settings(ctx)` and `readOnly(ctx)` get the Koa context (see the core README). */
export type SessionLocalOptions = RequestSessionOptions<Context>;
/** `false` opts a route out; an object changes `commitWhen`, `finish`, `settings`, `readOnly` for it. */
export type SessionLocalRouteOptions = RouteSessionOptions<Context>;

interface RequestState {
  options: SessionLocalOptions;
  scope: RequestScope | undefined;
}

const STATE = Symbol('sessionlocal.koa');

/**
 * Koa middleware: one lazily opened database session per request as `ctx.db`, committed after
 * the downstream middleware and before Koa writes the response when the status passes
 * `commitWhen`, rolled back otherwise (errors are rethrown to Koa), always closed.
 * @example
 * app.use(sessionLocal({ factory: SessionLocal }));
 * app.use(bodyParser());
 * router.post('/items', async (ctx) => { ctx.status = 201; ctx.body = await Item.create(ctx.request.body); });
 */
export function sessionLocal(options: SessionLocalOptions): Middleware {
  checkRequestSessionOptions(options);
  return async function sessionLocalMiddleware(ctx: Context, next: Next): Promise<void> {
    const state: RequestState = { options, scope: undefined };
    (ctx as Context & { [STATE]?: RequestState })[STATE] = state;
    try {
      await enter(state, ctx, openRequestScope(options, ctx), next);
    } catch (error) {
      await state.scope?.end({ status: 500, error });
      throw error;
    }
    await finish(ctx, state.scope);
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
    const state = (ctx as Context & { [STATE]?: RequestState })[STATE];
    if (!state) throw new Error('sessionLocal.route() needs app.use(sessionLocal({ factory })) before the router.');
    return enter(state, ctx, reopenRequestScope(state.scope, state.options, ctx, routeOptions), next);
  };
};

function enter(state: RequestState, ctx: Context, scope: RequestScope | undefined, next: Next): Promise<void> {
  state.scope = scope;
  ctx.db = (scope?.session ?? null) as Session;
  if (!scope) return runOutsideSession(state.options.factory, next);
  scope.watch(ctx.res);
  return scope.run(next);
}

/** Commit before Koa writes the status line; on a failed COMMIT answer the error response instead. */
async function finish(ctx: Context, scope: RequestScope | undefined): Promise<void> {
  if (!scope) return;
  // Koa pipes the body after this middleware returned: keep the stream's reads in the session
  if (scope.finish === 'after-response') {
    if (ctx.body instanceof Readable) scope.bindReads(ctx.body);
    return;
  }
  if (scope.endIfUntouched()) return;
  const { response } = await scope.end({ status: ctx.status });
  if (!response) return;
  const body = ctx.body as { destroy?: () => void } | null | undefined;
  if (typeof body?.destroy === 'function') body.destroy();
  for (const header of ctx.res.getHeaderNames()) ctx.remove(header);
  ctx.status = response.status;
  ctx.set(response.headers);
  ctx.body = response.body;
}

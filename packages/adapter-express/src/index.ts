import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { Session } from '@sessionlocal/session-core';
import {
  checkRequestSessionOptions,
  openRequestScope,
  reopenRequestScope,
  reportCommitFailure,
  requestProperty,
  responseHolder,
  runListenersInScope,
  runOutsideSession,
  type RequestScope,
  type RequestSessionOptions,
  type RouteSessionOptions,
} from '@sessionlocal/session-core/adapter';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The request's database session (reading it on a route opted out with `sessionLocal.route(false)` throws `NoActiveSessionError`). */
      db: Session;
    }
  }
}

/** Options of `sessionLocal` (see the core README for their semantics). */
export type SessionLocalOptions = RequestSessionOptions<Request>;
/** `false` opts a route out; an object changes `commitWhen`, `finish`, `settings`, `readOnly` for it. */
export type SessionLocalRouteOptions = RouteSessionOptions<Request>;
/** The same options under the name pattern shared by the three adapters. */
export type ExpressSessionLocalOptions = SessionLocalOptions;

interface RequestState {
  options: SessionLocalOptions;
  scope: RequestScope | undefined;
}

const STATES = Symbol('sessionlocal.express');
type WithStates = Request & { [STATES]?: RequestState[] };

/**
 * Express middleware: one lazily opened database session per request as `req.db`, committed
 * before the response when the status passes `commitWhen`, rolled back otherwise, always closed.
 * Mount `sessionLocal.errors()` before your error handlers so that a thrown error rolls back
 * whatever status they answer.
 * @example
 * app.use(sessionLocal({ factory: SessionLocal }));
 * app.use(express.json());
 * app.post('/items', async (req, res) => res.status(201).json(await Item.create(req.body)));
 * app.use(sessionLocal.errors());
 */
export function sessionLocal(options: SessionLocalOptions): RequestHandler {
  checkRequestSessionOptions(options);
  const hold = responseHolder();
  const name = options.name ?? 'db';
  return function sessionLocalMiddleware(req: Request, res: Response, next: NextFunction): void {
    const state: RequestState = { options, scope: undefined };
    ((req as WithStates)[STATES] ??= []).push(state);
    runListenersInScope(req, () => state.scope);
    hold(res, () => state.scope, (result) => reportCommitFailure(options, req, result, (error) => report(req, error)));
    enter(state, name, req, res, openRequestScope(options, req), next);
  };
}

/**
 * Per-route options, as a route middleware after `app.use(sessionLocal(...))` (applies to every registration).
 * @example
 * app.get('/ping', sessionLocal.route(false), (req, res) => res.json({ pong: true }));
 * app.get('/report', sessionLocal.route({ readOnly: () => true }), report);
 */
sessionLocal.route = function route(routeOptions: SessionLocalRouteOptions): RequestHandler {
  return function sessionLocalRoute(req: Request, res: Response, next: NextFunction): void {
    const states = (req as WithStates)[STATES] ?? [];
    try {
      if (states.length === 0) throw new Error('sessionLocal.route() needs app.use(sessionLocal({ factory })) before the route.');
      for (const state of states) state.scope = reopenRequestScope(state.scope, state.options, req, routeOptions);
    } catch (error) {
      next(error);
      return;
    }
    let run = () => next();
    for (const state of states) {
      const inner = run;
      requestProperty(req, state.options.name ?? 'db', state.scope?.session);
      run = () => (state.scope ? state.scope.watch(res).run(inner) : runOutsideSession(state.options.factory, inner));
    }
    run();
  };
};

/**
 * Error middleware: a handler's error (thrown, or passed to `next(err)`) rolls the request back
 * whatever status your error handler then answers. Mount it after the routes, before your error handlers.
 * @example
 * app.use(sessionLocal.errors());
 * app.use((err, req, res, next) => res.status(500).json({ error: 'internal' }));
 */
sessionLocal.errors = function errors(): ErrorRequestHandler {
  return function sessionLocalErrors(error: unknown, req: Request, _res: Response, next: NextFunction): void {
    for (const state of (req as WithStates)[STATES] ?? []) state.scope?.fail(error);
    next(error);
  };
};

/** The same middleware under the name pattern shared by the three adapters. */
export const expressSessionLocal = sessionLocal;

function enter(state: RequestState, name: string, req: Request, res: Response, scope: RequestScope | undefined, next: NextFunction): void {
  state.scope = scope;
  requestProperty(req, name, scope?.session);
  if (scope) scope.watch(res).run(() => next());
  else runOutsideSession(state.options.factory, () => next());
}

/** Express has no error channel of its own outside the request: the app's 'error' listeners, else stderr. */
function report(req: Request, error: unknown): void {
  const app = req.app as unknown as { listenerCount?(event: string): number; emit?(event: string, ...args: unknown[]): boolean } | undefined;
  if (app?.listenerCount && app.listenerCount('error') > 0) app.emit?.('error', error, req);
  else console.error('sessionlocal: COMMIT failed; the client got 500 instead of the handler response:', error);
}

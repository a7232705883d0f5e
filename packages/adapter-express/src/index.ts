import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { Session } from '@sessionlocal/session-core';
import {
  checkRequestSessionOptions,
  mount,
  mountedOn,
  reportCommitFailure,
  responseHolder,
  runInScope,
  runListenersInScope,
  runRoute,
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

/**
 * Express middleware (Express 4 and 5; it imports only Express's types): one lazily opened
 * database session per request as `req.db`, committed before the response when the status
 * passes `commitWhen`, rolled back otherwise, always closed. Mount `sessionLocal.errors()` before
 * your error handlers so that a thrown error rolls back whatever status they answer.
 * @example
 * app.use(sessionLocal({ factory: SessionLocal }));
 * app.use(express.json());
 * app.post('/items', async (req, res) => res.status(201).json(await Item.create(req.body)));
 * app.use(sessionLocal.errors());
 */
export function sessionLocal(options: SessionLocalOptions): RequestHandler {
  checkRequestSessionOptions(options);
  const hold = responseHolder();
  return function sessionLocalMiddleware(req: Request, res: Response, next: NextFunction): void {
    const mounted = mount(req, options, req);
    runListenersInScope(req, () => mounted.scope);
    hold(
      res,
      () => mounted.scope,
      (result) => reportCommitFailure(options, req, result, (error) => report(req, error)),
    );
    mounted.scope?.watch(res);
    runInScope(mounted, () => next());
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
    try {
      runRoute(
        req,
        req,
        routeOptions,
        (scope) => scope.watch(res),
        () => next(),
      );
    } catch (error) {
      next(error);
    }
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
    for (const mounted of mountedOn(req)) mounted.scope?.fail(error);
    next(error);
  };
};

/** The same middleware under the name pattern shared by the three adapters. */
export const expressSessionLocal = sessionLocal;

/** Express has no error channel of its own outside the request: the app's 'error' listeners, else stderr. */
function report(req: Request, error: unknown): void {
  const app = req.app as unknown as { listenerCount?(event: string): number; emit?(event: string, ...args: unknown[]): boolean } | undefined;
  if (app?.listenerCount && app.listenerCount('error') > 0) app.emit?.('error', error, req);
  else console.error('sessionlocal: COMMIT failed; the client got 500 instead of the handler response:', error);
}

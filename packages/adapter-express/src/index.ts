import type { NextFunction, Request, RequestHandler, Response } from 'express';
import {
  checkRequestSessionOptions,
  openRequestScope,
  reopenRequestScope,
  runListenersInScope,
  runOutsideSession,
  type RequestScope,
  type RequestSessionOptions,
  type RouteSessionOptions,
  type Session,
} from '@sessionlocal/session-core';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The request's database session (`null` on a route opted out with `sessionLocal.route(false)`). */
      db: Session;
    }
  }
}

/** Options of `sessionLocal` (see the core README for their semantics). */
export type SessionLocalOptions = RequestSessionOptions<Request>;
/** `false` opts a route out; an object changes `commitWhen`, `finish`, `settings`, `readOnly` for it. */
export type SessionLocalRouteOptions = RouteSessionOptions<Request>;

interface RequestState {
  options: SessionLocalOptions;
  scope: RequestScope | undefined;
}

const STATE = Symbol('sessionlocal.express');
const WRITES = ['writeHead', 'flushHeaders', 'write', 'end'] as const;
type Write = (typeof WRITES)[number];

/**
 * Express middleware: one lazily opened database session per request as `req.db`, committed
 * before the response when the status passes `commitWhen`, rolled back otherwise, always closed.
 * @example
 * app.use(sessionLocal({ factory: SessionLocal }));
 * app.use(express.json());
 * app.post('/items', async (req, res) => res.status(201).json(await Item.create(req.body)));
 */
export function sessionLocal(options: SessionLocalOptions): RequestHandler {
  checkRequestSessionOptions(options);
  return function sessionLocalMiddleware(req: Request, res: Response, next: NextFunction): void {
    const state: RequestState = { options, scope: undefined };
    (req as Request & { [STATE]?: RequestState })[STATE] = state;
    runListenersInScope(req, () => state.scope);
    holdResponse(res, state);
    enter(state, req, res, openRequestScope(options, req), next);
  };
}

/**
 * Per-route options, as a route middleware after `app.use(sessionLocal(...))`.
 * @example
 * app.get('/ping', sessionLocal.route(false), (req, res) => res.json({ pong: true }));
 * app.get('/report', sessionLocal.route({ readOnly: () => true }), report);
 */
sessionLocal.route = function route(routeOptions: SessionLocalRouteOptions): RequestHandler {
  return function sessionLocalRoute(req: Request, res: Response, next: NextFunction): void {
    const state = (req as Request & { [STATE]?: RequestState })[STATE];
    if (!state) {
      next(new Error('sessionLocal.route() needs app.use(sessionLocal({ factory })) before the route.'));
      return;
    }
    let scope: RequestScope | undefined;
    try {
      scope = reopenRequestScope(state.scope, state.options, req, routeOptions);
    } catch (error) {
      next(error);
      return;
    }
    enter(state, req, res, scope, next);
  };
};

function enter(state: RequestState, req: Request, res: Response, scope: RequestScope | undefined, next: NextFunction): void {
  state.scope = scope;
  req.db = (scope?.session ?? null) as Session;
  if (scope) scope.watch(res).run(() => next());
  else runOutsideSession(state.options.factory, () => next());
}

/**
 * Commit before the status line: the first `writeHead`/`flushHeaders`/`write`/`end` is held
 * (with every call after it) until the scope has ended, then replayed in order, or replaced by
 * the error response when COMMIT failed.
 */
function holdResponse(res: Response, state: RequestState): void {
  const original = Object.fromEntries(WRITES.map((name) => [name, res[name]])) as Pick<Response, Write>;
  const held: Array<[Write, unknown[]]> = [];
  let mode: 'idle' | 'hold' | 'done' | 'discard' = 'idle';
  for (const name of WRITES) {
    (res as unknown as Record<Write, unknown>)[name] = function heldWrite(this: Response, ...args: unknown[]): unknown {
      const scope = state.scope;
      if (mode === 'done' || (mode === 'idle' && scope?.finish !== 'before-response')) return (original[name] as (...a: unknown[]) => unknown).apply(this, args);
      if (mode === 'discard') return name === 'write' ? true : this;
      held.push([name, args]);
      if (mode === 'idle') {
        mode = 'hold';
        void release(scope!, name === 'writeHead' && typeof args[0] === 'number' ? args[0] : res.statusCode);
      }
      return name === 'write' ? false : this;
    };
  }

  async function release(scope: RequestScope, status: number): Promise<void> {
    const { response } = await scope.end({ status });
    mode = 'done';
    if (response && !res.headersSent) {
      for (const header of res.getHeaderNames()) res.removeHeader(header);
      res.statusCode = response.status;
      for (const [header, value] of Object.entries({ ...response.headers, 'content-type': 'application/json; charset=utf-8' })) res.setHeader(header, value);
      (original.end as (body: string) => Response).call(res, JSON.stringify(response.body));
      mode = 'discard';
      return;
    }
    let writable = true;
    for (const [name, args] of held.splice(0)) {
      const result = (original[name] as (...a: unknown[]) => unknown).apply(res, args);
      if (name === 'write') writable = result as boolean;
    }
    if (writable && !res.writableEnded) res.emit('drain');
  }
}

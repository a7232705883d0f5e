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
  const holdResponse = responseHolder();
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

/** Per-response state of the held writes. */
interface Hold {
  state: RequestState;
  readonly original: Pick<Response, Write>;
  held: Array<[Write, unknown[]]> | undefined;
  mode: 'idle' | 'hold' | 'done' | 'discard';
}

/**
 * Commit before the status line: the first `writeHead`/`flushHeaders`/`write`/`end` is held
 * (with every call after it) until the scope has ended, then replayed in order, or replaced by
 * the error response when COMMIT failed. One set of wrappers per middleware (not per response),
 * under its own key, so that two `sessionLocal` middlewares (two engines) chain.
 */
function responseHolder(): (res: Response, state: RequestState) => void {
  const HOLD = Symbol('sessionlocal.hold');
  type HeldResponse = Response & { [HOLD]: Hold };
  const wrappers = Object.fromEntries(
    WRITES.map((name) => [
      name,
      function heldWrite(this: HeldResponse, ...args: unknown[]): unknown {
        const hold = this[HOLD];
        const scope = hold.state.scope;
        // nothing to hold: no session, one that ends after the response, or one that never queried
        if (hold.mode === 'idle' && (scope?.finish !== 'before-response' || scope.endIfUntouched())) hold.mode = 'done';
        if (hold.mode === 'done') return (hold.original[name] as (...a: unknown[]) => unknown).apply(this, args);
        if (hold.mode === 'discard') return name === 'write' ? true : this;
        (hold.held ??= []).push([name, args]);
        if (hold.mode === 'idle') {
          hold.mode = 'hold';
          void release(this, hold, scope!, name === 'writeHead' && typeof args[0] === 'number' ? args[0] : this.statusCode);
        }
        return name === 'write' ? false : this;
      },
    ]),
  );
  return (res, state) => {
    const mounted = (res as HeldResponse)[HOLD];
    if (mounted) {
      mounted.state = state; // the same middleware mounted twice: its latest scope is the request's
      return;
    }
    (res as HeldResponse)[HOLD] = { state, original: { writeHead: res.writeHead, flushHeaders: res.flushHeaders, write: res.write, end: res.end }, held: undefined, mode: 'idle' };
    Object.assign(res, wrappers);
  };
}

async function release(res: Response, hold: Hold, scope: RequestScope, status: number): Promise<void> {
  const { original } = hold;
  const { response } = await scope.end({ status });
  hold.mode = 'done';
  if (response && !res.headersSent) {
    for (const header of res.getHeaderNames()) res.removeHeader(header);
    res.statusCode = response.status;
    for (const [header, value] of Object.entries({ ...response.headers, 'content-type': 'application/json; charset=utf-8' })) res.setHeader(header, value);
    (original.end as (body: string) => Response).call(res, JSON.stringify(response.body));
    hold.mode = 'discard';
    return;
  }
  let writable = true;
  const held = hold.held ?? [];
  hold.held = undefined;
  for (const [name, args] of held) {
    const result = (original[name] as (...a: unknown[]) => unknown).apply(res, args);
    if (name === 'write') writable = result as boolean;
  }
  if (writable && !res.writableEnded) res.emit('drain');
}

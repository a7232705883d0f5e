import { openRequestScope, reopenRequestScope, runOutsideSession, type RequestScope, type RequestSessionOptions, type RouteSessionOptions } from '../request-scope.js';
import { requestProperty } from './request-property.js';

/** One registration's state on one request (Express `req`, Koa `ctx`): several registrations (engines) stack. */
export interface Mounted<Req> {
  readonly options: RequestSessionOptions<Req>;
  scope: RequestScope | undefined;
}

const MOUNTED = Symbol('sessionlocal.mounted');
type Target = { [MOUNTED]?: Array<Mounted<unknown>> };

/**
 * A registration meets a request: open its scope (no I/O), put the session on `target[name]`
 * (`name` option, default `db`) and remember it on the request, after any earlier registration's.
 */
export function mount<Req>(target: object, options: RequestSessionOptions<Req>, req: Req): Mounted<Req> {
  const mounted: Mounted<Req> = { options, scope: undefined };
  const all = ((target as Target)[MOUNTED] ??= []);
  all.push(mounted as Mounted<unknown>);
  enterScope(mounted, target, openRequestScope(options, req));
  if (all.length === 2) all[0]?.scope?.joinGroup(() => all.map((m) => m.scope));
  return mounted;
}

const GROUP = Symbol('sessionlocal.group');

/**
 * For adapters that keep no `Mounted` list (Fastify: one plugin instance per registration):
 * record `scope` as one of the request's registrations; from the second on, they end together
 * in registration order (`RequestScope.end`).
 */
export function joinRequestGroup(target: object, scope: RequestScope): void {
  // one registration (the common case) keeps its scope, not an array
  const holder = target as { [GROUP]?: RequestScope | RequestScope[] };
  const met = holder[GROUP];
  if (met === undefined) {
    holder[GROUP] = scope;
  } else if (Array.isArray(met)) {
    met.push(scope);
    scope.joinGroup(() => met);
  } else {
    const all = [met, scope];
    holder[GROUP] = all;
    for (const each of all) each.joinGroup(() => all);
  }
}

/** The registrations this request met, in mount order (empty when none did). */
export function mountedOn<Req>(target: object): Array<Mounted<Req>> {
  return ((target as Target)[MOUNTED] ?? []) as Array<Mounted<Req>>;
}

/** Make `scope` the registration's scope on this request (the session on `target[name]`, a throwing getter when opted out). */
export function enterScope<Req>(mounted: Mounted<Req>, target: object, scope: RequestScope | undefined): void {
  mounted.scope = scope;
  requestProperty(target, mounted.options.name ?? 'db', scope?.session);
  // several registrations (engines) on one request: their scopes end together, in registration order
  const all = (target as Target)[MOUNTED];
  if (scope && all && all.length > 1) scope.joinGroup(() => all.map((m) => m.scope));
}

/**
 * Per-route options met after the registrations opened their scopes (a route middleware): each
 * registration's untouched scope is replaced by the route's (hooks follow), then `next` runs in
 * all of them, outermost registration first. Throws `ConfigError` when a scope was already used,
 * or when no registration met the request.
 */
export function runRoute<Req, T>(target: object, req: Req, route: RouteSessionOptions<Req>, watch: (scope: RequestScope) => void, next: () => T): T {
  const all = mountedOn<Req>(target);
  if (all.length === 0) throw new Error('sessionLocal.route() needs the sessionLocal middleware registered before the route.');
  for (const mounted of all) enterScope(mounted, target, reopenRequestScope(mounted.scope, mounted.options, req, route));
  let run = next;
  for (const mounted of [...all].reverse()) {
    const inner = run;
    const scope = mounted.scope;
    run = scope
      ? () => {
          watch(scope);
          return scope.run(inner);
        }
      : () => runOutsideSession(mounted.options.factory, inner);
  }
  return run();
}

/** Run `next` in the registration's scope (or outside any session when the route opted out). */
export function runInScope<Req, T>(mounted: Mounted<Req>, next: () => T): T {
  return mounted.scope ? mounted.scope.run(next) : runOutsideSession(mounted.options.factory, next);
}

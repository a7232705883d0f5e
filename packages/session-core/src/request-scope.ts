import { checkSettings } from './config.js';
import {
  CommitError,
  CommitOutcomeUnknownError,
  EngineDisposedError,
  PartialCommitError,
  ConfigError as SessionLocalConfigError,
  PoolTimeoutError,
  ReplicaUnavailableError,
  ReplyTimeoutError,
  SessionLocalError,
} from './errors.js';
import type { Scope } from './scope.js';
import type { Session } from './session.js';
import type { SessionFactory, SessionOptions } from './sessionmaker.js';
import { applyResponseHeaders, mergeSetCookie, type HeaderTarget } from './response-headers.js';

/** When the session ends relative to the response. */
export type FinishMode = 'before-response' | 'after-response';

/** Options shared by the three adapters (same names, same meaning). */
export interface RequestSessionOptions<Req> {
  /** The `SessionLocal` to open request sessions from (swap it in tests). */
  factory: SessionFactory;
  /** Commit when this returns true for the response status (default: `status < 400`). */
  commitWhen?: (status: number) => boolean;
  /** `'before-response'` (default): COMMIT completes before the status line is sent. */
  finish?: FinishMode;
  /** Per-request transaction-local settings (`set_config(name, value, true)`). */
  settings?: (req: Req) => Record<string, string> | undefined;
  /** Per-request read-only session. */
  readOnly?: (req: Req) => boolean;
  /** The request property the session is on (default `'db'`): give a second registration (another engine) its own. */
  name?: string;
  /**
   * Told when COMMIT failed and the client got the error response instead of the handler's
   * (default: the framework's own error reporting: Fastify `request.log.error`, Koa
   * `app.emit('error')`, Express `app.emit('error')` when the app listens, else `console.error`).
   */
  onCommitError?: (error: unknown, req: Req) => void;
  /**
   * Read-your-writes across requests (with `replicas`): a request that committed a write answers
   * with its commit's WAL position (cookie `sl_lsn` and header `x-sessionlocal-lsn` by default);
   * a later read-only request that sends it back (the browser does, for the cookie) reads from a
   * replica only once it has replayed that position, else from the primary. `true` for the
   * defaults; `cookie`/`header` rename (or `false` turn off) a carrier; `maxAgeSeconds` (default
   * 60) is how long the cookie asks to be kept. Needs `finish: 'before-response'` to send it.
   */
  readYourWrites?: boolean | ReadYourWritesCarrier;
}

/** Where the adapters carry a commit's WAL position between requests (see `readYourWrites`). */
export interface ReadYourWritesCarrier {
  /** Cookie name (default `sl_lsn`); `false`: no cookie. */
  cookie?: string | false;
  /** Request and response header (default `x-sessionlocal-lsn`); `false`: no header. */
  header?: string | false;
  /** The cookie's `Max-Age` (default 60). */
  maxAgeSeconds?: number;
}

interface ResolvedCarrier {
  cookie: string | undefined;
  header: string | undefined;
  maxAgeSeconds: number;
}

/** Per-route control: `false` opts the route out of the session; an object changes the options. */
export type RouteSessionOptions<Req> = false | Partial<Omit<RequestSessionOptions<Req>, 'factory' | 'name' | 'onCommitError'>>;

/** The part of Node's `ServerResponse` a scope watches. */
export interface ResponseLike {
  readonly statusCode: number;
  readonly writableFinished: boolean;
  /** `end()` was called (an HTTP/2 response reads `writableFinished` true once its stream was reset: both must hold). */
  readonly writableEnded?: boolean;
  on(event: 'close', listener: () => void): unknown;
  once(event: 'close' | 'finish', listener: () => void): unknown;
  /** Used by read-your-writes to send the commit's WAL position. */
  readonly headersSent?: boolean;
  getHeader?(name: string): unknown;
  setHeader?(name: string, value: string | string[]): unknown;
}

/** How a request ended, as the adapter saw it. */
export interface RequestOutcome {
  status: number;
  error?: unknown;
}

/** What ending the scope decided. `response` is set when the client must get an error instead. */
export interface RequestResult {
  committed: boolean;
  error?: unknown;
  response?: HttpError;
  /** Headers the response must carry (read-your-writes token): set on the response already when its headers were not out; a response holder applies them when it replays. */
  headers?: Record<string, string | string[]>;
}

/** An HTTP error response for a sessionlocal error. */
export interface HttpError {
  status: number;
  headers: Record<string, string>;
  /** `committed` / `failed`: the registrations (`name`s) of a `partially_committed` answer. */
  body: { error: string; message: string; committed?: string[]; failed?: string[] };
}

const defaultCommitWhen = (status: number) => status < 400;

const reported = new WeakSet<object>();

const COMMIT_FAILED: HttpError = { status: 500, headers: {}, body: { error: 'commit_failed', message: 'The transaction could not be committed; nothing was saved.' } };

/** The session of one request and the decision of how it ends. Adapters only call these methods. */
export class RequestScope {
  readonly session: Session;
  readonly finish: FinishMode;
  /** The registration's `name` (the request property, default `db`). */
  readonly name: string;
  private readonly commitWhen: (status: number) => boolean;
  private ending: Promise<RequestResult> | undefined;
  private failure: unknown;
  private response: ResponseLike | undefined;
  private readonly carrier: ResolvedCarrier | undefined;
  private group: (() => Array<RequestScope | undefined>) | undefined;
  /** Adapter bookkeeping: the status of the answer first decided for this request (Fastify: a late error's second `onSend` must not answer again). */
  answered: number | undefined;

  constructor(session: Session, finish: FinishMode, commitWhen: (status: number) => boolean, name = 'db', carrier?: ResolvedCarrier) {
    this.session = session;
    this.finish = finish;
    this.commitWhen = commitWhen;
    this.name = name;
    this.carrier = carrier;
  }

  /**
   * @internal The request has several registrations (one per engine): `scopes` gives them in
   * registration order. Ending one ends them all, one after the other in that order (see `end`).
   */
  joinGroup(scopes: () => Array<RequestScope | undefined>): void {
    this.group = scopes;
  }

  /** @internal Replaced by a route's scope: it ends alone. */
  leaveGroup(): void {
    this.group = undefined;
  }

  /**
   * Run the rest of the request (`next`) in the session's scope. Once the session has ended the
   * scope stays: `current()` finds no session there and statements throw `SessionClosedError`
   * (they never autocommit behind the request's back).
   */
  run<T>(fn: () => T): T {
    return this.session.engine.scope.run({ session: this.session, transaction: undefined, autocommit: false }, fn);
  }

  /**
   * The handler failed (seen by a framework error hook): `end()` will roll back. Once the outcome
   * is decided (`settled`) an error changes nothing, also for a registration of a group whose
   * COMMIT waits for an earlier one's (a late error after the answer must not roll it back under
   * an answer that said it was saved).
   */
  fail(error: unknown): void {
    if (this.ending === undefined) this.failure ??= error;
  }

  /**
   * Tie the scope to Node's `ServerResponse` (Express `res`, Koa `ctx.res`, Fastify `reply.raw`):
   * a client gone before the response finished aborts `session.signal` and rolls back at once
   * (after the statement in flight); with `'after-response'` the scope ends on `finish` with the
   * final status. Whatever happened, the scope is ended when the response closes.
   */
  watch(res: ResponseLike): this {
    if (this.carrier) this.response = res;
    // 'close' comes once per response: on() is enough (and cheaper than once())
    res.on('close', () => {
      if (this.ending) return; // already ended (commit before the response, or untouched)
      if (res.writableFinished && res.writableEnded !== false) {
        void this.end({ status: res.statusCode }).catch(() => undefined);
        return;
      }
      const reason = new DOMException('The client disconnected before the response was complete.', 'AbortError');
      this.abort(reason);
      void this.end({ status: res.statusCode, error: reason }).catch(() => undefined);
    });
    if (this.finish === 'after-response') {
      res.once('finish', () => {
        // Node's HTTP/2 compatibility API emits 'finish' for a stream the client reset too (then
        // end() was never called): 'close', right after, sees it as the abort it is
        if (res.writableEnded === false) return;
        void this.end({ status: res.statusCode }).catch(() => undefined);
      });
    }
    return this;
  }

  /**
   * Run a response body stream's reads in this scope. For frameworks that pipe the body after
   * the middleware chain returned (Koa), where code producing the stream (an async generator
   * querying as it goes) would otherwise run outside the request's session.
   */
  bindReads<S extends object>(stream: S): S {
    const target = stream as S & { _read?: (size: number) => void };
    const read = target._read;
    if (typeof read !== 'function') return stream;
    const scope = this;
    target._read = function readInScope(this: unknown, size: number): void {
      scope.run(() => read.call(this, size));
    };
    return stream;
  }

  /** The client went away: abort `session.signal` now; `end()` will roll back. */
  abort(reason: unknown = new Error('client disconnected')): void {
    this.session.abort(reason);
  }

  /** True once `end()` (or `endIfUntouched()`) has decided the outcome. */
  get settled(): boolean {
    return this.ending !== undefined;
  }

  get aborted(): boolean {
    return this.session.abortRequested;
  }

  /**
   * End the request's session: commit when the handler succeeded, the status passes
   * `commitWhen` and the client is still there; otherwise roll back. Always closes. Idempotent;
   * never rejects (a failed COMMIT is reported in the result, with the `response` to send).
   */
  end(outcome: RequestOutcome): Promise<RequestResult> {
    // registrations that end at the same point end together ('after-response' ones end on 'finish')
    if (!this.ending && this.group)
      RequestScope.endGroup(
        this.group().filter((scope) => scope?.finish === this.finish),
        outcome,
      );
    if (!this.ending && !this.endIfUntouched(outcome)) this.ending = this.endNow(outcome);
    return this.ending as Promise<RequestResult>;
  }

  /**
   * Several registrations on one request end together, with the first outcome any of them was
   * ended with: in registration order, one COMMIT after the other (no two-phase commit). When one
   * fails, the later ones roll back, and every registration's result carries one response: the
   * failure's own (`commit_failed`) when nothing had committed, else 500 `partially_committed`
   * naming what was and was not saved. Only the failing registration's result carries the error
   * (it is reported once). Each result resolves when the whole group has ended.
   */
  private static endGroup(scopes: Array<RequestScope | undefined>, outcome: RequestOutcome): void {
    const group = scopes.filter((scope): scope is RequestScope => scope !== undefined);
    if (group.length < 2) return;
    const ended = new Map(group.map((scope) => [scope, scope.ending] as const));
    const pending = group.filter((scope) => !scope.ending && !scope.endIfUntouched(outcome));
    const all = (async () => {
      const results = new Map<RequestScope, RequestResult>();
      let failed: { scope: RequestScope; result: RequestResult } | undefined;
      for (const scope of group) {
        const earlier = ended.get(scope);
        let result: RequestResult;
        if (earlier) result = await earlier;
        else if (!pending.includes(scope))
          result = await (scope.ending as Promise<RequestResult>); // untouched
        else result = await scope.endNow(failed ? { status: outcome.status, error: failed.result.error } : outcome);
        results.set(scope, result);
        if (!failed && result.response && !result.committed) failed = { scope, result };
      }
      // one response carries every committed registration's read-your-writes headers: the
      // holder outermost on the response applies its result's, the others' writes pass through it
      const headers = groupHeaders(group.map((scope) => results.get(scope)?.headers));
      if (headers) for (const scope of group) results.set(scope, { ...(results.get(scope) as RequestResult), headers });
      if (!failed) return results;
      const committed = group.filter((scope) => results.get(scope)?.committed).map((scope) => scope.name);
      const lost = group.filter((scope) => !results.get(scope)?.committed && scope.session.counts.transactions > 0).map((scope) => scope.name);
      let error = failed.result.error;
      let response = failed.result.response as HttpError;
      if (committed.length > 0) {
        error = new PartialCommitError(committed, lost.length ? lost : [failed.scope.name], error);
        response = {
          status: 500,
          headers: {},
          body: {
            error: 'partially_committed',
            message: `Only part of the request was saved: ${committed.join(', ')} committed, then the commit of ${failed.scope.name} failed; nothing of ${(error as PartialCommitError).failed.join(', ')} was saved.`,
            committed,
            failed: (error as PartialCommitError).failed,
          },
        };
      }
      // each result carries the one answer and its error (reportCommitFailure reports an error once)
      for (const scope of group) {
        const own = results.get(scope) as RequestResult;
        // a committed registration's read-your-writes headers stay: its data was saved
        results.set(scope, { committed: own.committed, error, response, ...(own.headers && { headers: own.headers }) });
      }
      return results;
    })();
    for (const scope of pending) scope.ending = all.then((results) => results.get(scope) as RequestResult);
  }

  /**
   * End synchronously when the session never started anything (a route that did not query):
   * returns true once ended (nothing to commit, nothing to answer instead), false when `end()`
   * must be awaited. Adapters call it first so that lazy requests cost no promise and no delay.
   */
  endIfUntouched(outcome?: RequestOutcome): boolean {
    if (this.ending) return false;
    if (!this.session.closeIfUntouched()) return false;
    this.ending = Promise.resolve(this.untouched(outcome));
    return true;
  }

  /** The read-your-writes token of the session's last COMMIT (none for a client that left). */
  private tokenHeaders(): Record<string, string | string[]> | undefined {
    const lsn = this.session.commitLsn;
    return this.carrier && lsn !== undefined && !this.aborted ? sendLsn(this.carrier, this.response, lsn) : undefined;
  }

  private untouched(outcome: RequestOutcome | undefined): RequestResult {
    const error = outcome?.error ?? this.failure;
    if (error !== undefined) return { committed: false, error };
    // the handler committed its write itself (`db.commit()`) and ran nothing after: its token still goes out
    const headers = this.tokenHeaders();
    return headers ? { committed: false, headers } : { committed: false };
  }

  private async endNow(outcome: RequestOutcome): Promise<RequestResult> {
    const session = this.session;
    session.seal();
    try {
      const error = outcome.error ?? this.failure;
      if (error !== undefined) return { committed: false, error };
      // the engine was disposed under the request: its work was rolled back, the client must not get the handler's answer
      if (session.terminated) {
        const disposed = new EngineDisposedError();
        return { committed: false, error: disposed, response: httpErrorFor(disposed) };
      }
      // the handler closed the session itself (an explicit rollback): its response stands, nothing to commit;
      // a write it committed itself (`db.commit()`) before a 4xx still gives its token: the client must see it
      if (session.state === 'closed' || this.aborted || !this.commitWhen(outcome.status)) {
        const headers = this.tokenHeaders();
        return headers ? { committed: false, headers } : { committed: false };
      }
      await session.commitSealed();
      const headers = this.tokenHeaders();
      return headers ? { committed: true, headers } : { committed: true };
    } catch (error) {
      // COMMIT (or commitWhen) failed: the client must not get the handler's 2xx
      return { committed: false, error, response: httpErrorFor(error) ?? COMMIT_FAILED };
    } finally {
      // close() rolls back what is left; it reports its own failures and never changes the outcome
      await session.close().catch(() => undefined);
    }
  }
}

/** 503 `replica_unavailable` with the error's `Retry-After`. */
function replicaUnavailable(error: ReplicaUnavailableError): HttpError {
  return {
    status: 503,
    headers: { 'retry-after': String(error.retryAfterSeconds) },
    body: { error: 'replica_unavailable', message: 'No read replica can serve this request right now; retry shortly.' },
  };
}

/** Run `fn` where the factory's engine has no current session (an opted-out route). */
export function runOutsideSession<T>(factory: SessionFactory, fn: () => T): T {
  // run() with an empty scope, not exit(): on Node 20 exit() disables and re-enables the
  // storage, which resets V8's promise hooks every call (measured: ~2% of a /ping server's CPU)
  const outside: Scope = { session: undefined, transaction: undefined, autocommit: false };
  return factory.engine.scope.run(outside, fn);
}

/**
 * Run the listeners of the request stream inside the request's scope. Body parsers that call
 * back from stream events (`express.json()`, busboy, raw-body) otherwise continue the request in
 * the socket's async context, where `SessionLocal.current()` finds nothing.
 */
export function runListenersInScope(emitter: { emit(event: string | symbol, ...args: unknown[]): boolean }, scope: () => RequestScope | undefined): void {
  const emit = emitter.emit;
  emitter.emit = function emitInScope(this: unknown, event: string | symbol, ...args: unknown[]): boolean {
    const current = scope();
    return current ? current.run(() => emit.call(this, event, ...args)) : emit.call(this, event, ...args);
  };
}

/**
 * Open the session scope of one request, or `undefined` when the route opted out.
 * No I/O: the connection is acquired by the first query.
 */
export function openRequestScope<Req>(options: RequestSessionOptions<Req>, req: Req, route?: RouteSessionOptions<Req>): RequestScope | undefined {
  if (route === false) return undefined;
  const merged = route ? { ...options, ...route } : options;
  const settings = merged.settings ? checkSettings(merged.settings(req)) : undefined;
  const readOnly = merged.readOnly ? merged.readOnly(req) : undefined;
  const carrier = merged.readYourWrites ? resolveCarrier(merged.readYourWrites, options.name) : undefined;
  if (carrier) {
    const factory = options.factory;
    const overrides: SessionOptions = requestOverrides(options.factory, settings, readOnly) ?? {};
    if ((readOnly ?? factory.options.readOnly) === true) {
      const minLsn = receivedLsn(carrier, req);
      if (minLsn !== undefined) overrides.minLsn = minLsn;
    } else if (!factory.options.readYourWrites) {
      overrides.readYourWrites = true;
    }
    return new RequestScope(factory(overrides), merged.finish ?? 'before-response', merged.commitWhen ?? defaultCommitWhen, options.name ?? 'db', carrier);
  }
  const session = options.factory(requestOverrides(options.factory, settings, readOnly));
  return new RequestScope(session, merged.finish ?? 'before-response', merged.commitWhen ?? defaultCommitWhen, options.name ?? 'db');
}

/**
 * The session options a request gives (`settings(req)`, `readOnly(req)`). A request with settings
 * on a `deferredReads` factory runs in the default mode: a read before BEGIN would miss them.
 */
function requestOverrides(factory: SessionFactory, settings: Record<string, string> | undefined, readOnly: boolean | undefined): SessionOptions | undefined {
  if (settings === undefined && readOnly === undefined) return undefined;
  const overrides: SessionOptions = {};
  if (settings) {
    overrides.settings = settings;
    if (factory.options.deferredReads) overrides.deferredReads = false;
  }
  if (readOnly !== undefined) overrides.readOnly = readOnly;
  return overrides;
}

const carriers = new WeakMap<object, ResolvedCarrier>();
const namedCarriers = new Map<string, ResolvedCarrier>();

/** `sl_lsn` / `x-sessionlocal-lsn`; a second registration (another engine, another cluster) gets its own names. */
function defaultCarrier(registration: string): ResolvedCarrier {
  if (registration === 'db') return DEFAULT_CARRIER;
  let carrier = namedCarriers.get(registration);
  if (!carrier) {
    const suffix = registration.replace(/[^A-Za-z0-9_-]/g, '_');
    carrier = { ...DEFAULT_CARRIER, cookie: `${DEFAULT_CARRIER.cookie}_${suffix}`, header: `${DEFAULT_CARRIER.header}-${suffix.toLowerCase()}` };
    namedCarriers.set(registration, carrier);
  }
  return carrier;
}
const DEFAULT_CARRIER: ResolvedCarrier = { cookie: 'sl_lsn', header: 'x-sessionlocal-lsn', maxAgeSeconds: 60 };
const LSN_TEXT = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Validate a `readYourWrites` option (`ConfigError` naming the field). */
function resolveCarrier(option: true | ReadYourWritesCarrier, registration = 'db'): ResolvedCarrier {
  if (option === true) return defaultCarrier(registration);
  if (typeof option !== 'object' || option === null) throw new SessionLocalConfigError('readYourWrites', 'must be true or { cookie, header, maxAgeSeconds }');
  let resolved = carriers.get(option);
  if (resolved) return resolved;
  const name = (field: 'cookie' | 'header'): string | undefined => {
    const value = option[field];
    if (value === false) return undefined;
    if (value === undefined) return DEFAULT_CARRIER[field];
    if (typeof value !== 'string' || !TOKEN.test(value))
      throw new SessionLocalConfigError(`readYourWrites.${field}`, `must be a ${field} name (letters, digits, - _) or false, got ${JSON.stringify(value)}`);
    return field === 'header' ? value.toLowerCase() : value;
  };
  const maxAge = option.maxAgeSeconds ?? DEFAULT_CARRIER.maxAgeSeconds;
  if (!Number.isInteger(maxAge) || maxAge < 1) throw new SessionLocalConfigError('readYourWrites.maxAgeSeconds', `must be an integer >= 1, got ${JSON.stringify(maxAge)}`);
  resolved = { cookie: name('cookie'), header: name('header'), maxAgeSeconds: maxAge };
  carriers.set(option, resolved);
  return resolved;
}

/** The WAL position a request brought back (header first, then cookie); malformed values are ignored. */
function receivedLsn(carrier: ResolvedCarrier, req: unknown): string | undefined {
  const headers = (req as { headers?: Record<string, string | string[] | undefined> } | undefined)?.headers;
  if (!headers) return undefined;
  if (carrier.header) {
    const value = headers[carrier.header];
    const text = Array.isArray(value) ? value[0] : value;
    if (text && LSN_TEXT.test(text.trim())) return text.trim().toUpperCase();
  }
  if (carrier.cookie) {
    const cookie = headers.cookie;
    const text = Array.isArray(cookie) ? cookie.join('; ') : cookie;
    if (text) {
      for (const part of text.split(';')) {
        const eq = part.indexOf('=');
        if (eq < 0 || part.slice(0, eq).trim() !== carrier.cookie) continue;
        const value = part.slice(eq + 1).trim();
        if (LSN_TEXT.test(value)) return value.toUpperCase();
      }
    }
  }
  return undefined;
}

/**
 * The headers carrying the commit's WAL position (returned for a response holder to apply), set
 * on the response now when its headers are not out yet.
 */
function sendLsn(carrier: ResolvedCarrier, res: ResponseLike | undefined, lsn: string): Record<string, string | string[]> {
  const headers: Record<string, string | string[]> = {};
  if (carrier.header) headers[carrier.header] = lsn;
  if (carrier.cookie) {
    headers['set-cookie'] = [`${carrier.cookie}=${lsn}; Max-Age=${carrier.maxAgeSeconds}; Path=/; HttpOnly; SameSite=Lax`];
  }
  if (!res || res.headersSent || typeof res.setHeader !== 'function' || typeof res.getHeader !== 'function') return headers;
  try {
    applyResponseHeaders(headers, res as HeaderTarget);
  } catch {
    // headers already out: the holder applies them, or the token is lost (reads use the usual routing)
  }
  return headers;
}

/**
 * Per-route options met after the request's scope was opened (Express/Koa route middleware):
 * end the untouched request scope and open the route's instead (`undefined` when it opts out).
 * Throws `ConfigError` when something already used the request's session.
 */
export function reopenRequestScope<Req>(current: RequestScope | undefined, options: RequestSessionOptions<Req>, req: Req, route: RouteSessionOptions<Req>): RequestScope | undefined {
  if (current?.session.holdsConnection) {
    throw new SessionLocalConfigError('route', 'per-route session options must run before anything uses the request session (put the route middleware first)');
  }
  const next = openRequestScope(options, req, route);
  if (current) {
    // hooks registered by earlier middleware belong to the request: they follow it to the route's session
    if (next) current.session.moveHooksTo(next.session);
    // ended on its own: ending it must not end the request's other registrations
    current.leaveGroup();
    if (!current.endIfUntouched()) void current.end({ status: 0, error: 'replaced by route options' }).catch(() => undefined);
  }
  return next;
}

/**
 * Per-route options decided once per route (fastify-postgres's `onRoute` habit): `check(route)`
 * validates a route's options when the route is added (`ConfigError`), `resolve(holder)` gives the
 * merged options of the route whose config object holds them (`false`: opted out), computed at
 * the route's first request and kept.
 */
export function routeOptionsResolver<Req>(options: RequestSessionOptions<Req>) {
  const resolved = new WeakMap<object, RequestSessionOptions<Req> | false>();
  return {
    check(route: RouteSessionOptions<Req> | undefined): void {
      if (route) checkRequestSessionOptions({ ...options, ...route });
    },
    resolve(holder: { sessionLocal?: RouteSessionOptions<Req> }): RequestSessionOptions<Req> | false {
      let merged = resolved.get(holder);
      if (merged === undefined) {
        const route = holder.sessionLocal;
        merged = route === false ? false : route ? { ...options, ...route } : options;
        resolved.set(holder, merged);
      }
      return merged;
    },
  };
}

/** Validate adapter options once, at registration (`ConfigError` naming the field). */
export function checkRequestSessionOptions<Req>(options: RequestSessionOptions<Req>): RequestSessionOptions<Req> {
  if (!options || typeof options.factory !== 'function') {
    throw new SessionLocalConfigError('factory', 'is required: pass the SessionLocal made by sessionmaker(engine)');
  }
  if (options.finish !== undefined && options.finish !== 'before-response' && options.finish !== 'after-response') {
    throw new SessionLocalConfigError('finish', `must be 'before-response' or 'after-response', got ${JSON.stringify(options.finish)}`);
  }
  if (options.name !== undefined && (typeof options.name !== 'string' || !/^[A-Za-z_$][\w$]*$/.test(options.name))) {
    throw new SessionLocalConfigError('name', `must be a property name such as 'db' or 'reportsDb', got ${JSON.stringify(options.name)}`);
  }
  for (const key of ['commitWhen', 'settings', 'readOnly', 'onCommitError'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') throw new SessionLocalConfigError(key, 'must be a function');
  }
  if (options.readYourWrites !== undefined && options.readYourWrites !== false) resolveCarrier(options.readYourWrites);
  return options;
}

/**
 * Report a failed COMMIT (the client got `result.response` instead of the handler's answer) to
 * `options.onCommitError`, else to `fallback` (the framework's own error reporting).
 */
export function reportCommitFailure<Req>(options: RequestSessionOptions<Req>, req: Req, result: RequestResult, fallback: (error: unknown) => void): void {
  if (!result.response || result.error === undefined) return;
  // several registrations of one request share one failure: it is reported once
  if (typeof result.error === 'object' && result.error !== null) {
    if (reported.has(result.error)) return;
    reported.add(result.error);
  }
  try {
    (options.onCommitError ?? fallback)(result.error, req);
  } catch {
    // reporting must never break the response
  }
}

/**
 * The HTTP answer for errors the session layer owns: `PoolTimeoutError`, `ReplyTimeoutError` and
 * `ReplicaUnavailableError` -> 503 with `Retry-After`, `CommitError` and `CommitOutcomeUnknownError` -> 500 (never with
 * `Retry-After`). Anything else: `undefined` (the framework handles it).
 */
export function httpErrorFor(error: unknown): HttpError | undefined {
  const found = findSessionError(error);
  if (found instanceof PoolTimeoutError) {
    return { status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_busy', message: 'The database is busy; retry shortly.' } };
  }
  // a read-only COMMIT cut because its replica was marked down: nothing was to be saved, the replica is what failed
  if (found instanceof CommitError && found.cause instanceof ReplicaUnavailableError) return replicaUnavailable(found.cause);
  if (found instanceof CommitError) return COMMIT_FAILED;
  if (found instanceof EngineDisposedError)
    return { status: 503, headers: { 'retry-after': '1' }, body: { error: 'shutting_down', message: 'The server is shutting down; nothing of this request was saved. Retry shortly.' } };
  if (found instanceof ReplicaUnavailableError) return replicaUnavailable(found);
  if (found instanceof ReplyTimeoutError)
    return { status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_unavailable', message: 'The database did not answer in time; retry shortly.' } };
  if (!found && isConnectFailure(error)) return DATABASE_UNREACHABLE;
  if (found instanceof CommitOutcomeUnknownError)
    return {
      status: 500,
      headers: {},
      body: { error: 'commit_outcome_unknown', message: 'The database did not confirm the commit: the change may or may not have been saved. Check before retrying.' },
    };
  return undefined;
}

const DATABASE_UNREACHABLE: HttpError = {
  status: 503,
  headers: { 'retry-after': '1' },
  body: { error: 'database_unavailable', message: 'The database cannot be reached; nothing of this request was saved. Retry shortly.' },
};

/** Sequelize's errors for a connection that could not be opened (refused, unreachable, timed out): nothing ran. Not a refused login. */
const CONNECT_FAILURES = new Set(['SequelizeConnectionError', 'SequelizeConnectionRefusedError', 'SequelizeHostNotFoundError', 'SequelizeHostNotReachableError', 'SequelizeConnectionTimedOutError']);

function isConnectFailure(error: unknown): boolean {
  if (!(error instanceof Error) || !CONNECT_FAILURES.has(error.name)) return false;
  const code = (error as { parent?: { code?: unknown } }).parent?.code;
  // the server answered: only "too many connections" (53…) and "shutting down / starting up" (57P…) pass with time
  if (typeof code === 'string' && /^[0-9A-DF-Z][0-9A-Z]{4}$/.test(code)) return /^(53|57P)/.test(code);
  return true;
}

function findSessionError(error: unknown): SessionLocalError | undefined {
  let current = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    if (current instanceof SessionLocalError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * The read-your-writes headers of several registrations as one set (`set-cookie` merged),
 * undefined when none has any: a response holder mounted by several registrations applies the
 * result of one of them, and every committed registration's token must go out.
 */
function groupHeaders(each: Array<Record<string, string | string[]> | undefined>): Record<string, string | string[]> | undefined {
  const present = each.filter((headers): headers is Record<string, string | string[]> => headers !== undefined);
  if (present.length === 0) return undefined;
  const all: Record<string, string | string[]> = {};
  for (const headers of present) for (const [name, value] of Object.entries(headers)) all[name] = name === 'set-cookie' && all[name] !== undefined ? mergeSetCookie(all[name], value) : value;
  return all;
}

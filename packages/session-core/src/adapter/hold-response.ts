import { ServerResponse } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
import type { HttpError, RequestResult, RequestScope } from '../request-scope.js';
import { applyResponseHeaders, mergeSetCookie } from '../response-headers.js';

const WRITES = ['writeHead', 'flushHeaders', 'write', 'end'] as const;
type Write = (typeof WRITES)[number];
type Method = (...args: unknown[]) => unknown;

/** Per-response state of the held writes (one per holder: two registrations chain). */
interface Hold {
  /** The holder that mounted it. */
  readonly owner: ResponseHolder;
  scope: () => RequestScope | undefined;
  readonly original: Originals;
  held: Array<[Write, unknown[]]> | undefined;
  /** `idle`: nothing written yet; `hold`: writes wait for the scope to end; `done`: pass through; `discard`: an error response replaced the handler's. */
  mode: 'idle' | 'hold' | 'done' | 'discard';
  /** The handler ended its response while it was held: later writes are refused as Node refuses writes after `end`. */
  ended: boolean;
  status: number;
  /** The status came from a held `writeHead(status)`. */
  headStatus: boolean;
  headers: Record<string, number | string | string[] | undefined> | undefined;
  /** `socket.destroy()` asked for while the finished response was held (Express's finalhandler after a late throw). */
  destroyAfter: { error?: Error } | undefined;
  /** Puts the socket's own `destroy` back (set while a finished response is held). */
  restoreDestroy: (() => void) | undefined;
  onResult: ((result: RequestResult) => void) | undefined;
  /** Whether the real response has sent its headers (the getter the wrappers shadow). */
  sent: (res: ServerResponse) => boolean;
}

/**
 * Rule 2 for responses written on Node's `ServerResponse` (Express `res`, a hijacked Fastify
 * `reply.raw`, Koa `ctx.res` with `ctx.respond = false`): the first `writeHead`/`flushHeaders`/
 * `write`/`end` is held (with every call after it) until the request scope has ended, then
 * replayed in order with the status and headers as they were when the handler wrote them, or
 * replaced by the error response when COMMIT failed (then the handler's further writes are
 * dropped and a writer waiting for 'drain' is released). Once the handler has ended its response,
 * `headersSent` reads true and setting headers throws `ERR_HTTP_HEADERS_SENT`, as without a hold.
 * Writes made after the scope ended pass through, inside the scope (so listeners of the write,
 * e.g. `res.on('finish')`, run where statements throw `SessionClosedError`).
 * The wrappers are put once on Node's `ServerResponse`/`Http2ServerResponse` prototype, shared by
 * all holders (they pass straight through on a response no holder was mounted on; creating
 * holders, even one per request, never stacks them), so mounting one costs a property on the
 * response. A response whose own write methods were replaced first (a wrapper of `res.end`
 * mounted before the session middleware), whose class overrides them, or that a second holder
 * (another registration) meets is wrapped on the instance instead, around what it had. A held
 * write that throws when replayed destroys the response.
 * @param onResult called with the scope's result when the hold ended it (error reporting).
 */
export function responseHolder(): ResponseHolder {
  /** This holder's Hold when it had to wrap the response instance (see below). */
  const INSTANCE = Symbol('sessionlocal.hold.instance');
  const holdOf = (res: ServerResponse): Hold | undefined => {
    const held = res as HeldResponse;
    const shared = held[SHARED];
    return held[INSTANCE] ?? (shared?.owner === holder ? shared : undefined);
  };
  const holder: ResponseHolder = (res, scope, onResult) => {
    const mounted = holdOf(res);
    if (mounted) {
      mounted.scope = scope; // the same holder mounted twice: its latest scope is the request's
      mounted.onResult = onResult;
      return;
    }
    // Fast path: the wrappers live once on the response class's prototype (shared by every
    // holder: creating holders never stacks wrappers there) and the response carries one
    // property. Wrapped on the instance instead: a response whose own methods were replaced (a
    // middleware that wraps `res.end` before this one), whose class overrides them, or that a
    // second holder (another registration) meets: its wrappers go around the first one's.
    const base = (res as HeldResponse)[SHARED] === undefined ? baseOf(res) : null;
    if (base) {
      const shared = patchBase(base);
      (res as HeldResponse)[SHARED] = newHold(holder, scope, shared.original, shared.sent, onResult);
      return;
    }
    const original = originalsOf(res);
    const sent = headersSentOf(res);
    (res as HeldResponse)[INSTANCE] = newHold(holder, scope, original, sent, onResult);
    Object.defineProperties(res, wrappersOver(INSTANCE, original, sent));
  };
  holder.unwritten = (res) => holdOf(res)?.mode === 'idle';
  return holder;
}

/** The Hold of the holder whose wrappers sit on the response's prototype. */
const SHARED = Symbol('sessionlocal.hold');
type HeldResponse = ServerResponse & { [key: symbol]: Hold | undefined };
/** Per base prototype (`ServerResponse`, `Http2ServerResponse`): the originals its wrappers call. */
const patched = new WeakMap<object, { original: Originals; sent: (res: ServerResponse) => boolean }>();

function patchBase(base: object): { original: Originals; sent: (res: ServerResponse) => boolean } {
  let shared = patched.get(base);
  if (!shared) {
    shared = { original: originalsOf(base), sent: headersSentOf(base) };
    Object.defineProperties(base, wrappersOver(SHARED, shared.original, shared.sent));
    patched.set(base, shared);
  }
  return shared;
}

/** The write methods and `headersSent` getter to put on `target` over `original` (what `target` resolved before). */
function wrappersOver(key: symbol, original: Originals, sent: (res: ServerResponse) => boolean): PropertyDescriptorMap {
  const descriptors: PropertyDescriptorMap = {};
  for (const name of WRITES) {
    const value = function heldWrite(this: HeldResponse, ...args: unknown[]): unknown {
      const hold = this[key];
      // a response no holder was mounted on (the wrappers sit on a shared prototype)
      if (hold === undefined) return original[name].apply(this, args);
      const method = original[name];
      const scope = hold.scope();
      if (hold.mode === 'idle') {
        // nothing to hold: no session, one that ends after the response, one already ended, or one that never queried
        if (!scope || scope.finish !== 'before-response' || scope.settled || scope.endIfUntouched()) hold.mode = 'done';
      }
      if (hold.mode === 'done') return scope ? scope.run(() => method.apply(this, args)) : method.apply(this, args);
      // dropped: after an error response (true: a writer waiting for 'drain' must not wait again), or after end
      if (hold.mode === 'discard') {
        callBack(args);
        return name === 'write' ? true : this;
      }
      if (hold.ended) return name === 'write' ? false : this;
      (hold.held ??= []).push([name, args]);
      const first = hold.mode === 'idle';
      if (name === 'writeHead' && typeof args[0] === 'number') {
        hold.status = args[0];
        hold.headStatus = true;
      } else if (first || (name === 'end' && !hold.headStatus)) {
        hold.status = this.statusCode;
      }
      if (name === 'end') {
        hold.ended = true;
        hold.headers = this.getHeaders();
        deferDestroy(this, hold);
      }
      if (first) {
        hold.mode = 'hold';
        // the first byte decides: the status the handler has set now is the request's outcome
        void release(this, hold, scope as RequestScope, hold.status);
      }
      return name === 'write' ? false : this;
    };
    descriptors[name] = { configurable: true, writable: true, enumerable: false, value };
  }
  descriptors.setHeader = {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function heldSetHeader(this: HeldResponse, ...args: unknown[]): unknown {
      const hold = this[key];
      if (hold?.ended && hold.mode === 'hold') throw Object.assign(new Error('Cannot set headers after they are sent to the client'), { code: 'ERR_HTTP_HEADERS_SENT' });
      return original.setHeader.apply(this, args);
    },
  };
  descriptors.headersSent = {
    configurable: true,
    enumerable: false,
    get(this: HeldResponse) {
      const own = this[key];
      return (own !== undefined && own.ended && own.mode === 'hold') || sent(this);
    },
  };
  return descriptors;
}

type Originals = Record<Write | 'setHeader', Method>;

function newHold(
  owner: ResponseHolder,
  scope: () => RequestScope | undefined,
  original: Originals,
  sent: (res: ServerResponse) => boolean,
  onResult: ((result: RequestResult) => void) | undefined,
): Hold {
  return {
    owner,
    scope,
    original,
    held: undefined,
    mode: 'idle',
    ended: false,
    status: 200,
    headStatus: false,
    headers: undefined,
    destroyAfter: undefined,
    restoreDestroy: undefined,
    onResult,
    sent,
  };
}

const OWN = [...WRITES, 'setHeader', 'headersSent'] as const;
const BASES: ReadonlySet<object> = new Set([ServerResponse.prototype, Http2ServerResponse.prototype]);
/** Per prototype: its base response prototype when nothing between overrides a write method, else null. */
const clean = new WeakMap<object, object | null>();

/** Node's response prototype `res` inherits from, when neither `res` nor a prototype in between overrides a write method or `headersSent`. */
function baseOf(res: ServerResponse): object | null {
  for (const name of OWN) if (Object.hasOwn(res, name)) return null;
  const proto = Object.getPrototypeOf(res) as object | null;
  if (!proto) return null;
  let base = clean.get(proto);
  if (base === undefined) {
    base = null;
    for (let p: object | null = proto; p; p = Object.getPrototypeOf(p) as object | null) {
      if (BASES.has(p)) {
        base = p;
        break;
      }
      if (OWN.some((name) => Object.hasOwn(p as object, name))) break;
    }
    clean.set(proto, base);
  }
  return base;
}

/**
 * The write methods and `setHeader` the wrappers put on `target` call: its own ones as they are
 * now, an inherited one looked up on `target`'s prototype at each call (a method patched there
 * later, e.g. by an instrumentation on `OutgoingMessage.prototype`, still runs: the wrappers on
 * `ServerResponse.prototype` would otherwise hide it from every response in the process).
 */
function originalsOf(target: object): Originals {
  // inherited methods are looked up through the prototype at each call (an object whose prototype is
  // `target`'s: a plain, inline-cached lookup), so a later patch of e.g. `OutgoingMessage.prototype.end` is seen
  const parent = Object.getPrototypeOf(target) as object | null;
  const originals = Object.create(parent) as Originals;
  for (const name of [...WRITES, 'setHeader'] as const) {
    if (Object.hasOwn(target, name) || !parent) originals[name] = (target as Record<string, Method>)[name]!;
  }
  return originals;
}

/** Holds a response's raw writes until its request scope ended (see `responseHolder`). */
export interface ResponseHolder {
  (res: ServerResponse, scope: () => RequestScope | undefined, onResult?: (result: RequestResult) => void): void;
  /**
   * Whether the handler has written nothing through this holder yet. Koa asks it when the chain
   * settled with `ctx.respond = false`: then, as in Express and Fastify, the first raw byte
   * decides (the hold ends the scope with the status written then), not the settled chain.
   */
  unwritten(res: ServerResponse): boolean;
}

/** The `headersSent` getter `target` resolves now (HTTP/1 reads `_header`; HTTP/2's `_header` reads `headersSent` back). */
function headersSentOf(target: object): (res: ServerResponse) => boolean {
  for (let proto: object | null = target; proto; proto = Object.getPrototypeOf(proto) as object | null) {
    const getter = Object.getOwnPropertyDescriptor(proto, 'headersSent')?.get;
    if (getter) return (res) => Boolean(getter.call(res));
  }
  return (res) => Boolean((res as unknown as { _header?: unknown })._header);
}

/** While the finished response is held, a `socket.destroy()` waits until it has been written. */
function deferDestroy(res: ServerResponse, hold: Hold): void {
  const socket = res.socket as unknown as { destroy: (error?: Error) => unknown } | null;
  if (!socket) return;
  const destroy = socket.destroy;
  socket.destroy = function deferredDestroy(this: unknown, error?: Error) {
    if (hold.mode !== 'hold') return destroy.call(this, error);
    hold.destroyAfter = { error };
    return this;
  };
  hold.destroyAfter = undefined;
  const restore = () => {
    socket.destroy = destroy;
  };
  hold.restoreDestroy = restore;
}

async function release(res: ServerResponse, hold: Hold, scope: RequestScope, status: number): Promise<void> {
  const result = await scope.end({ status });
  hold.onResult?.(result);
  const { response } = result;
  hold.mode = 'done';
  const { restoreDestroy } = hold;
  const finish = () => {
    restoreDestroy?.();
    const after = hold.destroyAfter;
    if (!after) return;
    // destroy once the response has been handed to the OS, never before its bytes
    if (res.writableFinished) res.socket?.destroy(after.error);
    else res.once('finish', () => res.socket?.destroy(after.error));
  };
  const { original } = hold;
  const held = hold.held ?? [];
  hold.held = undefined;
  if (response && !hold.sent(res)) {
    writeError(res, original, response);
    hold.mode = 'discard';
    for (const [, args] of held) callBack(args);
    res.emit('drain'); // a writer waiting for 'drain' goes on; its writes are dropped
    finish();
    return;
  }
  if (hold.ended) {
    for (const header of res.getHeaderNames()) res.removeHeader(header);
    for (const [header, value] of Object.entries(hold.headers ?? {})) if (value !== undefined) original.setHeader.call(res, header, value);
    res.statusCode = hold.status;
  }
  if (result.headers && !hold.sent(res)) {
    applyResponseHeaders(result.headers, { getHeader: (name) => res.getHeader(name), setHeader: (name, value) => original.setHeader.call(res, name, value) });
    const cookies = result.headers['set-cookie'];
    if (cookies) for (const entry of held) if (entry[0] === 'writeHead') entry[1] = withCookies(entry[1], cookies);
  }
  let writable = true;
  try {
    for (const [name, args] of held) {
      const value = scope.run(() => original[name]!.apply(res, args));
      if (name === 'write') writable = value as boolean;
    }
  } catch (error) {
    // a write the handler made threw when replayed (a wrapper of `res.end` setting a header after
    // the first byte): the handler is gone, so the response cannot be finished; never the process
    hold.mode = 'discard';
    finish();
    res.destroy(error as Error);
    return;
  }
  if (writable && !res.writableEnded) res.emit('drain');
  finish();
}

/**
 * The arguments of a held `writeHead(status, [message], headers)` with `cookies` (the
 * read-your-writes token) added to a `set-cookie` its headers carry: `writeHead`'s headers replace
 * those set before, so the token set with `setHeader` would be lost.
 */
function withCookies(args: unknown[], cookies: string | string[]): unknown[] {
  const at = typeof args[1] === 'string' ? 2 : 1;
  const given = args[at];
  const isCookie = (name: unknown) => typeof name === 'string' && name.toLowerCase() === 'set-cookie';
  let headers: unknown = given;
  if (Array.isArray(given)) {
    // flat [name, value, name, value, …]: Node 20 sets each pair over the last, later versions
    // append them; one `set-cookie` pair with every cookie is right for both
    const pairs: unknown[][] = [];
    for (let i = 0; i + 1 < given.length; i += 2) pairs.push([given[i], given[i + 1]]);
    if (!pairs.some(([name]) => isCookie(name))) return args;
    const theirs = pairs.filter(([name]) => isCookie(name)).flatMap(([, value]) => (Array.isArray(value) ? value : [value]));
    const merged = mergeSetCookie(theirs, cookies);
    headers = [...pairs.filter(([name]) => !isCookie(name)).flat(), 'set-cookie', merged];
  } else if (given !== null && typeof given === 'object') {
    const key = Object.keys(given).find(isCookie);
    if (key === undefined) return args;
    headers = { ...given, [key]: mergeSetCookie((given as Record<string, unknown>)[key], cookies) };
  } else {
    return args;
  }
  const copy = [...args];
  copy[at] = headers;
  return copy;
}

/** A dropped write still calls back, as a written one would: a handler awaiting `res.write(chunk, cb)` or `res.end(cb)` goes on. */
function callBack(args: unknown[]): void {
  const callback = args[args.length - 1];
  if (typeof callback === 'function') process.nextTick(callback as () => void);
}

/** Answer with the error response instead of the handler's (JSON, the status and headers of `response`). */
function writeError(res: ServerResponse, original: Hold['original'], response: HttpError): void {
  for (const header of res.getHeaderNames()) res.removeHeader(header);
  res.statusCode = response.status;
  for (const [header, value] of Object.entries(renderHttpError(response).headers)) original.setHeader.call(res, header, value);
  original.end.call(res, renderHttpError(response).body);
}

/** The bytes of an error response: its headers (content type included) and JSON body. */
export function renderHttpError(response: HttpError): { status: number; headers: Record<string, string>; body: string } {
  return { status: response.status, headers: { ...response.headers, 'content-type': 'application/json; charset=utf-8' }, body: JSON.stringify(response.body) };
}

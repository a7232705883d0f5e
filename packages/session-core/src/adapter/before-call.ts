const PATCHED = Symbol('sessionlocal.patched');
type Hook = (instance: object) => void;
/** Per method name, the symbol under which an instance keeps the hook to run before its next call. */
const keys = new Map<string, symbol>();

/**
 * Run `fn(instance)` (once) when `instance[method]()` is next called, before the method; several calls
 * before it run in the order they were made (two registrations). The method is patched once on
 * the instance's prototype, not per instance, and the hook is kept on the instance under one
 * symbol per method: no per-request WeakMap entry (whose ephemerons V8's GC pays for), no closure
 * over the instance in a module-level table. (Fastify: hold the raw response only when the
 * handler calls `reply.hijack()`.)
 */
export function beforeCall<I extends object>(instance: I, method: string, fn: (instance: I) => void): void {
  const key = hookKey(method);
  const target = instance as unknown as Record<symbol, Hook | undefined>;
  const earlier = target[key];
  target[key] = earlier
    ? (self) => {
        earlier(self);
        (fn as Hook)(self);
      }
    : (fn as Hook);
  const proto = Object.getPrototypeOf(instance) as Record<string | symbol, unknown> & { [PATCHED]?: Set<string> };
  const patched = (proto[PATCHED] ??= new Set());
  if (patched.has(method)) return;
  patched.add(method);
  const original = proto[method] as (...args: unknown[]) => unknown;
  proto[method] = function beforeCallPatched(this: Record<symbol, Hook | undefined>, ...args: unknown[]) {
    const hook = this[key];
    if (hook) {
      this[key] = undefined;
      hook(this);
    }
    return original.apply(this, args);
  };
}

/** The property `beforeCall(…, method, …)` keeps its hook under: declare it on the framework's per-request object (Fastify's `decorateReply`) so that the object keeps one shape. */
beforeCall.key = hookKey;

function hookKey(method: string): symbol {
  let key = keys.get(method);
  if (!key) keys.set(method, (key = Symbol(`sessionlocal.before.${method}`)));
  return key;
}

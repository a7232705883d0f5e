const PATCHED = Symbol('sessionlocal.patched');
const pending = new WeakMap<object, Map<string, () => void>>();

/**
 * Run `fn` (once) when `instance[method]()` is next called, before the method. The method is
 * patched once on the instance's prototype, not per instance: adding an own property to a
 * framework's per-request object would change its shape on the hot path. (Fastify: hold the raw
 * response only when the handler calls `reply.hijack()`.)
 */
export function beforeCall(instance: object, method: string, fn: () => void): void {
  let hooks = pending.get(instance);
  if (!hooks) pending.set(instance, (hooks = new Map()));
  hooks.set(method, fn);
  const proto = Object.getPrototypeOf(instance) as Record<string | symbol, unknown> & { [PATCHED]?: Set<string> };
  const patched = (proto[PATCHED] ??= new Set());
  if (patched.has(method)) return;
  patched.add(method);
  const original = proto[method] as (...args: unknown[]) => unknown;
  proto[method] = function beforeCallPatched(this: object, ...args: unknown[]) {
    const hook = pending.get(this)?.get(method);
    if (hook) {
      pending.get(this)?.delete(method);
      hook();
    }
    return original.apply(this, args);
  };
}

import { NoActiveSessionError } from '../errors.js';
import type { Session } from '../session.js';

/**
 * Put the request's session on `target[name]` (Express `req`, Koa `ctx`, Fastify `request`).
 * On a route that opted out (`session` undefined) reading it throws `NoActiveSessionError`
 * instead of handing out a `null` typed as a session.
 */
export function requestProperty(target: object, name: string, session: Session | undefined): void {
  if (session) {
    // a plain assignment on the hot path (defineProperty would turn the request object into a slow dictionary)
    (target as Record<string, unknown>)[name] = session;
    return;
  }
  Object.defineProperty(target, name, {
    configurable: true,
    enumerable: false,
    get() {
      throw new NoActiveSessionError(`This route opted out of the request session: ${name} is not available here (remove the opt-out, or use SessionLocal.begin(fn)).`);
    },
    set(value: unknown) {
      Object.defineProperty(this, name, { value, configurable: true, enumerable: true, writable: true });
    },
  });
}

import type { Model } from 'sequelize';
import type { Engine } from './engine.js';
import { InstanceExpiredError } from './errors.js';
import { ownerOf } from './owner.js';
import type { Session } from './session.js';

const installed = new WeakSet<Engine>();

/** Make every attribute read of `instance` throw `InstanceExpiredError` until it is refreshed. */
export function expire(instance: Model): void {
  const model = (instance.constructor as { name?: string }).name ?? 'Model';
  Object.defineProperty(instance, 'get', {
    configurable: true,
    enumerable: false,
    writable: true,
    value(key?: unknown): never {
      throw new InstanceExpiredError(model, typeof key === 'string' ? key : '*');
    },
  });
}

/** Undo `expire` (the prototype's `get` shows through again). */
export function unexpire(instance: Model): void {
  if (Object.prototype.hasOwnProperty.call(instance, 'get')) delete (instance as { get?: unknown }).get;
}

/**
 * Register universal Sequelize hooks (once per engine) that hand every instance loaded or saved
 * inside a session to that session, which expires them at commit when `expireOnCommit` is on.
 */
export function installExpiryTracking(engine: Engine): void {
  if (installed.has(engine)) return;
  installed.add(engine);
  const track = (result: unknown, options: { transaction?: unknown } | undefined) => {
    const tx = options?.transaction as Parameters<typeof ownerOf>[0] | null | undefined;
    const session: Session | undefined = tx ? ownerOf(tx) : engine.scope.getStore()?.session;
    if (!session?.options.expireOnCommit) return;
    const list = Array.isArray(result) ? result : [result];
    for (const item of list) if (item && typeof item === 'object') session.track(item as Model);
  };
  const hooks = engine.sequelize as unknown as { addHook(name: string, fn: (...args: any[]) => void): void };
  hooks.addHook('afterFind', track);
  hooks.addHook('afterCreate', track);
  hooks.addHook('afterSave', track);
  hooks.addHook('afterBulkCreate', track);
}

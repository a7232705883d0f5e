import { AsyncLocalStorage } from 'node:async_hooks';
import type { Transaction } from 'sequelize';
import type { Session } from './session.js';

/** What one async context knows: the session it belongs to and, inside a savepoint scope, its transaction. */
export interface Scope {
  readonly session: Session | undefined;
  /** Set inside `sequelize.transaction(cb)` / `beginNested`: queries join this instead of the session root. */
  transaction: Transaction | null | undefined;
  /** Set by `engine.autocommit(fn)`: queries may run outside any session on a strict engine. */
  readonly autocommit: boolean;
}

/** One AsyncLocalStorage per engine, so two engines never see each other's sessions. */
export type ScopeStorage = AsyncLocalStorage<Scope>;

export function createScopeStorage(): ScopeStorage {
  return new AsyncLocalStorage<Scope>();
}

/**
 * The `_cls` namespace Sequelize's Model methods consult (`this.sequelize.constructor._cls`).
 * It answers from the engine's AsyncLocalStorage, synchronously: a session whose transaction
 * has not begun yet answers `undefined`, and the lazy begin happens in `query()`.
 */
export function clsShim(storage: ScopeStorage) {
  return {
    get(key: string): unknown {
      if (key !== 'transaction') return undefined;
      const scope = storage.getStore();
      if (!scope) return undefined;
      if (scope.transaction !== undefined) return scope.transaction;
      return scope.session?.currentTransaction;
    },
    set(key: string, value: unknown): void {
      const scope = storage.getStore();
      if (scope && key === 'transaction') scope.transaction = value as Transaction | null;
    },
    run<T>(fn: (context: Scope | undefined) => T): T {
      const scope = storage.getStore();
      const next: Scope = { session: scope?.session, transaction: scope?.transaction, autocommit: scope?.autocommit ?? false };
      return storage.run(next, () => fn(next));
    },
    bind<F>(fn: F): F {
      return fn;
    },
  };
}

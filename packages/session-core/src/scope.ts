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
 * The one lookup of "the transaction a statement with no `transaction` option joins", used by
 * the CLS shim (Sequelize's model methods), the engine's `query`/`transaction`, and expiry:
 * 1. the scope's own transaction: inside `sequelize.transaction(cb)` or `beginNested`, that
 *    savepoint (`null` where code asked for none);
 * 2. else the scope's session's transaction, which exists before any I/O (the first statement
 *    acquires the connection and carries BEGIN); throws `SessionClosedError` once the session
 *    has ended or is ending;
 * 3. else none (`undefined`): autocommit, or `NoActiveSessionError` on a strict engine.
 * An explicit `transaction` option always wins over all three (the caller checks it first).
 */
export function joinedTransaction(scope: Scope | undefined): Transaction | null | undefined {
  if (!scope) return undefined;
  if (scope.transaction !== undefined) return scope.transaction;
  return scope.session?.sequelizeTransaction();
}

/**
 * The `_cls` namespace Sequelize's Model methods consult (`this.sequelize.constructor._cls`).
 * It answers `joinedTransaction` synchronously; where that throws (an ended session) it answers
 * `undefined` and the engine's `query` raises the error.
 */
export function clsShim(storage: ScopeStorage) {
  return {
    get(key: string): unknown {
      if (key !== 'transaction') return undefined;
      try {
        return joinedTransaction(storage.getStore());
      } catch {
        return undefined;
      }
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

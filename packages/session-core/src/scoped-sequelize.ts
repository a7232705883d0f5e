import { ConnectionAcquireTimeoutError, Sequelize, Transaction } from 'sequelize';
import type { Engine } from './engine.js';
import { NoActiveSessionError, PoolTimeoutError } from './errors.js';
import { ownerOf } from './owner.js';
import { isPureFind, PURE_READ } from './pure-read.js';
import { clsShim, joinedTransaction, type Scope } from './scope.js';

type QueryFn = (sql: unknown, options?: Record<string, unknown>) => Promise<unknown>;
type TransactionFn = (options?: Record<string, unknown>) => Promise<Transaction>;
type Internal = Transaction & { parent?: Transaction; finished?: string; name: string; _afterCommitHooks: Array<(t: Transaction) => unknown> };

/**
 * A `Sequelize` subclass bound to one engine. Sequelize 6 reads its CLS namespace from a
 * process-global static; this class gives each engine its own (`_cls`, over the engine's
 * AsyncLocalStorage) and overrides the two entry points every query passes through:
 * - `query`: a statement with no `transaction` option joins `joinedTransaction` (scope.ts);
 *   statements of a session run through the session (in order, on its connection);
 * - `transaction`: inside a session, a new transaction is a SAVEPOINT of the session's.
 */
export function scopedSequelizeClass(engine: Engine, Base: typeof Sequelize = Sequelize): typeof Sequelize {
  const storage = engine.scope;

  class EngineSequelize extends Base {
    static _cls = clsShim(storage);

    // biome-ignore lint/suspicious/noExplicitAny: Sequelize's constructor overloads
    constructor(...args: any[]) {
      super(...(args as []));
      // findCreateFind reads `options.transaction` itself (never CLS): fill it from the scope first
      (this as unknown as { addHook(name: string, fn: (model: unknown) => void): void }).addHook('afterDefine', (model) => joinFindCreateFind(model, storage));
      markPureReads(this, storage);
    }

    override async query(sql: any, options?: any): Promise<any> {
      const base = super.query as unknown as QueryFn;
      let opts = options as Record<string | symbol, unknown> | undefined;
      if (opts?.transaction === undefined) {
        const scope = storage.getStore();
        const transaction = joinedTransaction(scope);
        if (!transaction && engine.options.strict && !scope?.autocommit) {
          throw NoActiveSessionError.strictQuery(typeof sql === 'string' ? sql : String((sql as { query?: string })?.query ?? sql));
        }
        // null, not undefined: Sequelize would otherwise consult a global Sequelize.useCLS namespace
        opts = { ...opts, transaction: transaction ?? null };
      }
      const transaction = opts.transaction as Transaction | null;
      const session = transaction ? ownerOf(transaction) : undefined;
      if (session && transaction) return session.runStatement(transaction, sql, () => base.call(this, sql, opts), session.options.deferredReads && opts[PURE_READ] === true);
      try {
        return await base.call(this, sql, opts);
      } catch (error) {
        if (error instanceof ConnectionAcquireTimeoutError) throw new PoolTimeoutError(engine.options.pool.acquireTimeoutMs, error);
        throw error;
      }
    }

    override async transaction(options?: unknown, autoCallback?: (t: Transaction) => unknown): Promise<any> {
      let opts = options as Record<string, unknown> | undefined;
      let callback = autoCallback;
      if (typeof opts === 'function') {
        callback = opts as unknown as (t: Transaction) => unknown;
        opts = undefined;
      }
      const outer = storage.getStore();
      if (opts?.transaction === undefined) {
        const parent = joinedTransaction(outer);
        opts = { ...opts, transaction: parent ?? null };
      }
      const parent = (opts.transaction ?? undefined) as Transaction | undefined;
      if (!parent) delete opts.transaction;
      const session = parent ? ownerOf(parent) : undefined;
      // a managed unit of a session (`transaction(cb)`): refused up front when a sibling unit is
      // open or it asks what a savepoint cannot give. Unmanaged savepoints (Sequelize's own, e.g.
      // findOrCreate's, which it never releases) are not units.
      const leave = session && parent ? session.enterUnit(parent, opts, Boolean(callback)) : undefined;
      let transaction: Transaction;
      try {
        if (session) await session.ensureConnection();
        transaction = await (super.transaction as unknown as TransactionFn).call(this, opts);
      } catch (error) {
        leave?.();
        if (error instanceof ConnectionAcquireTimeoutError) throw new PoolTimeoutError(engine.options.pool.acquireTimeoutMs, error);
        throw error;
      }
      if (session) {
        session.counts.savepoints++;
        leave?.(transaction);
        deferToSession(this, transaction as Internal, () => leave?.());
      }
      if (!callback) return transaction;
      const scope: Scope = { session: outer?.session, transaction, autocommit: outer?.autocommit ?? false };
      return storage.run(scope, async () => {
        let result: unknown;
        try {
          result = await callback(transaction);
        } catch (error) {
          try {
            if (!(transaction as Internal).finished) await transaction.rollback();
          } catch {
            // the original error matters more
          }
          throw error;
        }
        if (!(transaction as Internal).finished) await transaction.commit();
        return result;
      });
    }
  }

  return EngineSequelize as unknown as typeof Sequelize;
}

/**
 * A model finder's SELECT that is a pure read (pure-read.ts) carries `PURE_READ` in its options,
 * for sessions with `deferredReads` only. Decided here, from the finder's options, before the
 * query generator renders them into SQL text.
 */
function markPureReads(sequelize: Sequelize, storage: Engine['scope']): void {
  const queryInterface = sequelize.getQueryInterface() as unknown as { select(model: unknown, table: unknown, options?: Record<string | symbol, unknown>): Promise<unknown> };
  const select = queryInterface.select;
  queryInterface.select = function selectMarkingPureReads(model, table, options) {
    if (options) {
      const explicit = options.transaction as Transaction | null | undefined;
      const session = explicit ? ownerOf(explicit) : explicit === undefined ? storage.getStore()?.session : undefined;
      if (session?.options.deferredReads && isPureFind(options)) options[PURE_READ] = true;
      else if (options[PURE_READ]) delete options[PURE_READ];
    }
    return select.call(this, model, table, options);
  };
}

/** A model's `findCreateFind` with no `transaction` option joins the scope's transaction, as every other finder does. */
function joinFindCreateFind(model: unknown, storage: Engine['scope']): void {
  const target = model as { findCreateFind?: (options?: Record<string, unknown>) => Promise<unknown> };
  const original = target.findCreateFind;
  if (typeof original !== 'function') return;
  target.findCreateFind = function findCreateFindInScope(this: unknown, options?: Record<string, unknown>) {
    if (options && options.transaction === undefined) {
      const transaction = joinedTransaction(storage.getStore());
      if (transaction) options = { ...options, transaction };
    }
    return original.call(this, options);
  };
}

/**
 * Savepoints of a session, managed or not: `commit()` RELEASEs the savepoint (Sequelize 6 leaves
 * it) and hands its `afterCommit` hooks to the session, to run after the real COMMIT (never when
 * the session rolls back); `rollback()` rolls back to it. Either ends the unit's registration.
 */
function deferToSession(sequelize: Sequelize, savepoint: Internal, leave: () => void): void {
  const parent = savepoint.parent;
  if (!parent) return;
  const rollback = savepoint.rollback.bind(savepoint);
  // Sequelize 6 overwrites a transaction's `name` with its newest child savepoint's name
  // (query-interface startTransaction/rollbackTransaction): keep this savepoint's own
  const own = savepoint.name;
  Object.assign(savepoint, {
    async commit(): Promise<void> {
      if (savepoint.finished) throw new Error(`Transaction cannot be committed because it has been finished with state: ${savepoint.finished}`);
      leave();
      savepoint.name = own;
      const name = sequelize.getQueryInterface().quoteIdentifier(own);
      await sequelize.query(`RELEASE SAVEPOINT ${name};`, { transaction: parent });
      savepoint.finished = 'commit';
      // up one level: they run after the real COMMIT, and are dropped if an enclosing unit rolls back
      for (const hook of savepoint._afterCommitHooks.splice(0)) (parent as Internal)._afterCommitHooks.push(() => hook(savepoint));
    },
    async rollback(): Promise<void> {
      leave();
      savepoint.name = own;
      await rollback();
    },
  });
}

import { ConnectionAcquireTimeoutError, Sequelize, Transaction } from 'sequelize';
import type { Engine } from './engine.js';
import { NoActiveSessionError, PoolTimeoutError } from './errors.js';
import { clsShim, type Scope } from './scope.js';
import { ownerOf } from './session.js';

type QueryFn = (sql: unknown, options?: Record<string, unknown>) => Promise<unknown>;
type TransactionFn = (options?: Record<string, unknown>) => Promise<Transaction>;

/**
 * A `Sequelize` subclass bound to one engine. Sequelize 6 reads its CLS namespace from a
 * process-global static; this class gives each engine its own (`_cls`, over the engine's
 * AsyncLocalStorage) and overrides the two entry points every query passes through:
 * - `query`: a statement with no `transaction` option joins the scope's transaction, lazily
 *   beginning the current session's; statements of a session run one at a time on its connection;
 * - `transaction`: inside a session, a new transaction is a SAVEPOINT of the session's.
 */
export function scopedSequelizeClass(engine: Engine, Base: typeof Sequelize = Sequelize): typeof Sequelize {
  const storage = engine.scope;

  class EngineSequelize extends Base {
    static _cls = clsShim(storage);

    override async query(sql: any, options?: any): Promise<any> {
      const base = super.query as unknown as QueryFn;
      let opts = options as Record<string, unknown> | undefined;
      if (opts?.transaction === undefined) {
        const scope = storage.getStore();
        const transaction = scope ? await scopeTransaction(scope) : undefined;
        if (transaction) {
          opts = { ...opts, transaction };
        } else if (engine.options.strict && !scope?.autocommit) {
          throw NoActiveSessionError.strictQuery(typeof sql === 'string' ? sql : String((sql as { query?: string })?.query ?? sql));
        } else if ((Sequelize as unknown as { _cls?: unknown })._cls) {
          // Sequelize's query() falls back to the process-global `Sequelize._cls` (an unrelated `useCLS`): never join its transaction
          opts = { ...opts, transaction: null };
        }
      }
      const transaction = opts?.transaction as Transaction | null | undefined;
      const session = transaction ? ownerOf(transaction) : undefined;
      if (session) return session.runStatement(sql, opts, (text) => base.call(this, text, opts));
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
      if (opts?.transaction === undefined) {
        const scope = storage.getStore();
        const parent = scope ? await scopeTransaction(scope) : undefined;
        if (parent) opts = { ...opts, transaction: parent };
      }
      const begin = super.transaction as unknown as TransactionFn;
      let transaction: Transaction;
      try {
        transaction = await begin.call(this, opts);
      } catch (error) {
        if (error instanceof ConnectionAcquireTimeoutError) throw new PoolTimeoutError(engine.options.pool.acquireTimeoutMs, error);
        throw error;
      }
      if (!callback) return transaction;
      const outer = storage.getStore();
      const scope: Scope = { session: outer?.session, transaction, autocommit: outer?.autocommit ?? false };
      return storage.run(scope, async () => {
        let result: unknown;
        try {
          result = await callback(transaction);
        } catch (error) {
          try {
            if (!(transaction as unknown as { finished?: string }).finished) await transaction.rollback();
          } catch {
            // the original error matters more
          }
          throw error;
        }
        await finishSavepointOrCommit(this as unknown as Sequelize, transaction);
        return result;
      });
    }
  }

  return EngineSequelize as unknown as typeof Sequelize;
}

async function scopeTransaction(scope: Scope): Promise<Transaction | null | undefined> {
  if (scope.transaction !== undefined) return scope.transaction;
  return scope.session ? scope.session.transactionForStatement() : undefined;
}

/** Savepoints of a session are RELEASEd (Sequelize 6 leaves them) and their afterCommit hooks wait for the real COMMIT. */
async function finishSavepointOrCommit(sequelize: Sequelize, transaction: Transaction): Promise<void> {
  const parent = (transaction as unknown as { parent?: Transaction }).parent;
  const session = parent ? ownerOf(parent) : undefined;
  if (!parent || !session) {
    await transaction.commit();
    return;
  }
  const name = (transaction as unknown as { name: string }).name;
  await sequelize.query(`RELEASE SAVEPOINT ${sequelize.getQueryInterface().quoteIdentifier(name)};`, { transaction: parent });
  const internal = transaction as unknown as { finished?: string; _afterCommitHooks: Array<(t: Transaction) => unknown> };
  internal.finished = 'commit';
  for (const hook of internal._afterCommitHooks.splice(0)) session.afterCommit(() => hook(transaction));
}

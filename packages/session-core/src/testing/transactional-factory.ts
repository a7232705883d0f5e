import type { Transaction } from 'sequelize';
import type { PooledConnection } from '../engine.js';
import { serial } from '../serial.js';
import { applySettings, Session } from '../session.js';
import { createFactory, type SessionFactory } from '../sessionmaker.js';

/** A factory whose sessions are savepoints of one outer transaction; `reset()` undoes everything. */
export interface TransactionalFactory extends SessionFactory {
  /** Roll back the outer transaction: every commit made through this factory disappears. */
  reset(): Promise<void>;
  /** Roll back and release the outer connection. */
  close(): Promise<void>;
}

/**
 * "Join an external transaction" for fast, isolated app tests: sessions from the returned factory
 * begin with SAVEPOINT inside one outer transaction, commit with RELEASE SAVEPOINT (deferred
 * constraints are checked, as a real COMMIT would) and roll back with ROLLBACK TO SAVEPOINT.
 * `afterCommit` hooks fire when the app's commit succeeds. Use it where the app takes its factory
 * (adapter `factory` option), like FastAPI's `dependency_overrides`. Sessions should not overlap.
 * @example
 * const TestSession = transactionalFactory(SessionLocal);
 * afterEach(() => TestSession.reset());
 * app.use(sessionLocal({ factory: TestSession }));
 */
export function transactionalFactory(SessionLocal: SessionFactory): TransactionalFactory {
  const engine = SessionLocal.engine;
  let outer: Session | undefined;
  const outerSession = () => {
    outer ??= SessionLocal();
    return outer;
  };

  class SavepointSession extends Session {
    private get savepoint(): string {
      return `sl_test_${this.id}`;
    }

    protected override async acquireAndBegin(): Promise<{ connection: PooledConnection }> {
      const root = outerSession();
      await root.transaction();
      const connection = root.heldConnection as PooledConnection;
      await serial(connection, async () => {
        engine.log(`SAVEPOINT ${this.savepoint}`);
        await connection.query(`SAVEPOINT ${this.savepoint}`);
        if (this.options.settings) await applySettings(engine, connection, this.options.settings);
      });
      return { connection };
    }

    protected override async sendCommit(connection: PooledConnection, _tx: Transaction): Promise<void> {
      // A real COMMIT checks deferred constraints; make RELEASE do the same, then restore their mode.
      await connection.query(`SAVEPOINT sl_check; SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK TO SAVEPOINT sl_check; RELEASE SAVEPOINT sl_check`).catch(async (error) => {
        await connection.query(`ROLLBACK TO SAVEPOINT ${this.savepoint}; RELEASE SAVEPOINT ${this.savepoint}`);
        throw error;
      });
      engine.log(`RELEASE SAVEPOINT ${this.savepoint}`);
      await connection.query(`RELEASE SAVEPOINT ${this.savepoint}`);
    }

    protected override async sendRollback(connection: PooledConnection, _tx: Transaction): Promise<void> {
      engine.log(`ROLLBACK TO SAVEPOINT ${this.savepoint}`);
      await connection.query(`ROLLBACK TO SAVEPOINT ${this.savepoint}; RELEASE SAVEPOINT ${this.savepoint}`);
    }

    protected override releaseConnection(): void {
      // the outer session owns the connection
    }
  }

  const factory = createFactory(engine, SessionLocal.options, SavepointSession) as unknown as TransactionalFactory;
  factory.reset = async () => {
    await outer?.rollback();
  };
  factory.close = async () => {
    const session = outer;
    outer = undefined;
    await session?.close();
  };
  return factory;
}

import type { PooledConnection } from '../engine.js';
import { serial } from '../serial.js';
import type { Session } from '../session.js';
import { createFactory, type SessionFactory } from '../sessionmaker.js';
import { applySettings, type SessionTransport } from '../transport.js';

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
  const savepoint = (session: Session) => `sl_test_${session.id}`;

  const transport: SessionTransport = {
    async open(session) {
      const root = outerSession();
      await root.transaction();
      const connection = root.heldConnection as PooledConnection;
      await serial(connection, async () => {
        engine.log(`SAVEPOINT ${savepoint(session)}`);
        await connection.query(`SAVEPOINT ${savepoint(session)}`);
        if (session.options.settings) await applySettings(engine, connection, session.options.settings);
      });
      return { connection };
    },
    async commit(session, connection) {
      // A real COMMIT checks deferred constraints; make RELEASE do the same, then restore their mode.
      await connection.query(`SAVEPOINT sl_check; SET CONSTRAINTS ALL IMMEDIATE; ROLLBACK TO SAVEPOINT sl_check; RELEASE SAVEPOINT sl_check`).catch(async (error) => {
        await connection.query(`ROLLBACK TO SAVEPOINT ${savepoint(session)}; RELEASE SAVEPOINT ${savepoint(session)}`);
        throw error;
      });
      engine.log(`RELEASE SAVEPOINT ${savepoint(session)}`);
      await connection.query(`RELEASE SAVEPOINT ${savepoint(session)}`);
    },
    async rollback(session, connection) {
      engine.log(`ROLLBACK TO SAVEPOINT ${savepoint(session)}`);
      await connection.query(`ROLLBACK TO SAVEPOINT ${savepoint(session)}; RELEASE SAVEPOINT ${savepoint(session)}`);
    },
    release() {
      // the outer session owns the connection
    },
  };

  const factory = createFactory(engine, SessionLocal.options, transport) as unknown as TransactionalFactory;
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

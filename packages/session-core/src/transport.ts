import type { Engine, PooledConnection } from './engine.js';
import { lostUnanswered } from './pipelined-begin.js';
import { COMMIT_RETURNING_LSN, lsnFromCommitResults, wantsCommitLsn } from './read-your-writes.js';
import type { Session } from './session.js';

/**
 * How a session reaches the database: where its connection comes from and what beginning,
 * committing, rolling back and releasing mean. The pool transport is the default; the testing
 * helpers plug in a savepoint transport (sessions inside one outer transaction) instead.
 */
export interface SessionTransport {
  /**
   * Get a connection for `session` and begin. Return `pendingBegin` to leave BEGIN for the first
   * statement to carry (one round trip fewer), or omit it once the transaction has begun.
   */
  open(session: Session): Promise<{ connection: PooledConnection; pendingBegin?: string }>;
  commit(session: Session, connection: PooledConnection): Promise<void>;
  rollback(session: Session, connection: PooledConnection): Promise<void>;
  /** Give the connection back; `destroy` when it is broken or may carry session-level state. */
  release(session: Session, connection: PooledConnection, destroy: boolean): void;
}

/** The BEGIN statement for a session's options. */
export function beginStatement(options: { isolationLevel?: string | undefined; readOnly: boolean }): string {
  let begin = 'BEGIN';
  if (options.isolationLevel) begin += ` ISOLATION LEVEL ${options.isolationLevel}`;
  if (options.readOnly) begin += ' READ ONLY';
  return begin;
}

/** Sessions on pooled connections of their engine: BEGIN / COMMIT / ROLLBACK. */
export const poolTransport: SessionTransport = {
  async open(session) {
    const { engine, options } = session;
    session.wrote = false;
    const begin = beginStatement(options);
    if (!options.settings) return { connection: await engine.acquire(options.readOnly, session), pendingBegin: begin };
    for (let attempt = 1; ; attempt++) {
      const connection = await engine.acquire(options.readOnly, session);
      try {
        engine.log(begin);
        await connection.query(begin);
        await applySettings(engine, connection, options.settings);
        return { connection };
      } catch (error) {
        engine.release(connection, true);
        // a stale pooled connection died before answering: nothing began, take a fresh one (once)
        if (attempt > 1 || !lostUnanswered(connection)) throw error;
      }
    }
  },
  async commit(session, connection) {
    if (wantsCommitLsn(session)) {
      session.engine.log(COMMIT_RETURNING_LSN);
      session.commitLsn = lsnFromCommitResults(await connection.query(COMMIT_RETURNING_LSN));
      return;
    }
    session.engine.log('COMMIT');
    await connection.query('COMMIT');
  },
  async rollback(session, connection) {
    session.engine.log('ROLLBACK');
    await connection.query('ROLLBACK');
  },
  release(session, connection, destroy) {
    session.engine.release(connection, destroy);
  },
};

/** Apply transaction-local settings with bound parameters. */
export async function applySettings(engine: Engine, connection: PooledConnection, settings: Record<string, string>): Promise<void> {
  const names = Object.keys(settings);
  const calls = names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ');
  const values = names.flatMap((name) => [name, settings[name]]);
  engine.log(`SELECT ${calls} -- ${names.join(', ')}`);
  await connection.query({ text: `SELECT ${calls}`, values });
}

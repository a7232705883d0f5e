import type { Engine, PooledConnection } from './engine.js';
import type { Session } from './session.js';

/**
 * How a session reaches the database: where its connection comes from and what beginning,
 * committing, rolling back and releasing mean. The pool transport is the default; the testing
 * helpers plug in a savepoint transport (sessions inside one outer transaction) instead.
 */
export interface SessionTransport {
  /**
   * Get a connection for `session` and begin. Return `pendingBegin` to leave BEGIN (and the
   * session's settings) for the first statement to carry (one round trip), or omit it once the
   * transaction has begun.
   */
  open(session: Session): Promise<{ connection: PooledConnection; pendingBegin?: PendingBegin }>;
  commit(session: Session, connection: PooledConnection): Promise<void>;
  rollback(session: Session, connection: PooledConnection): Promise<void>;
  /** Give the connection back; `destroy` when it is broken or may carry session-level state. */
  release(session: Session, connection: PooledConnection, destroy: boolean): void;
}

/** What opens a session's transaction: BEGIN, then its transaction-local settings, sent with the first statement in one pipeline. */
export interface PendingBegin {
  readonly text: string;
  /** `SELECT set_config($1, $2, true), …` with its values bound as parameters. */
  readonly settings: SettingsCall | undefined;
}

export interface SettingsCall {
  readonly text: string;
  readonly values: string[];
  /** For `echo`: the setting names, never their values. */
  readonly names: string;
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
    const text = beginStatement(options);
    const pendingBegin: PendingBegin = { text, settings: options.settings ? settingsCall(options.settings) : undefined };
    return { connection: await engine.acquire(options.readOnly, session), pendingBegin };
  },
  async commit(session, connection) {
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

/** The one statement that applies transaction-local settings, values bound as parameters. */
export function settingsCall(settings: Record<string, string>): SettingsCall {
  let call = calls.get(settings);
  if (!call) {
    call = buildSettingsCall(settings);
    calls.set(settings, call);
  }
  return call;
}

/** Factory settings are one object for every session: build their statement once. */
const calls = new WeakMap<Record<string, string>, SettingsCall>();

function buildSettingsCall(settings: Record<string, string>): SettingsCall {
  const names = Object.keys(settings);
  const calls = names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ');
  return { text: `SELECT ${calls}`, values: names.flatMap((name) => [name, settings[name] as string]), names: names.join(', ') };
}

/** Apply transaction-local settings with bound parameters (inside a transaction already begun). */
export async function applySettings(engine: Engine, connection: PooledConnection, settings: Record<string, string>): Promise<void> {
  const call = settingsCall(settings);
  engine.log(`${call.text} -- ${call.names}`);
  await connection.query({ text: call.text, values: call.values });
}

/** For `echo`: what a pending BEGIN sends (setting names, never values). */
export function describeBegin(begin: PendingBegin): string {
  return begin.settings ? `${begin.text}; ${begin.settings.text} -- ${begin.settings.names}` : begin.text;
}

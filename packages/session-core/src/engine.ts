import pg from 'pg';
import type { Sequelize, Options as SequelizeOptions } from 'sequelize';
import { ConnectionAcquireTimeoutError } from 'sequelize';
import { optionsFromEnv, parseDatabaseUrl, resolveEngineOptions, type EngineOptions, type ParsedUrl, type ResolvedEngineOptions } from './config.js';
import { EngineDisposedError, PoolTimeoutError } from './errors.js';
import { redact, scrubError } from './redact.js';
import { createScopeStorage, type ScopeStorage } from './scope.js';
import { SessionClient } from './pipelined-begin.js';
import { scopedSequelizeClass } from './scoped-sequelize.js';
import type { Session } from './session.js';

/** A pooled `pg` client as Sequelize hands it out. */
export interface PooledConnection extends pg.Client {
  uuid?: string;
  _invalid?: boolean;
  _ending?: boolean;
  queryType?: 'read' | 'write';
  /** BEGIN to send in the same pipeline as the next statement (see `SessionClient`). */
  beginWithNext?: string;
}

/** What `engine.stats()` reports. */
export interface EngineStats {
  pool: { size: number; idle: number; inUse: number; waiting: number };
  sessions: { open: number; opened: number; committed: number; rolledBack: number };
}

interface SequelizePool {
  size: number;
  available: number;
  using: number;
  waiting: number;
}

/** A database: the connection pool and the Sequelize instance its models are defined on. */
export class Engine<S extends Sequelize = Sequelize> {
  /** Define models here: `engine.sequelize.define(...)` (or `addModels` with sequelize-typescript). Queries join the current session. */
  readonly sequelize: S;
  /** The connection URL with its password shown as `***`. */
  readonly url: string;
  /** @internal */ readonly options: ResolvedEngineOptions;
  /** @internal */ readonly scope: ScopeStorage = createScopeStorage();
  /** @internal */ readonly secrets: string[];
  /** @internal sessions holding a connection */ readonly holding = new Set<Session>();
  /** @internal */ readonly counters = { opened: 0, committed: 0, rolledBack: 0 };
  /** @internal See `setStatementWrapper`. */ statementWrapper: (<T>(session: Session, send: () => Promise<T>) => Promise<T>) | undefined;
  private disposed = false;
  private disposing: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];

  constructor(url: string, options: EngineOptions<S> = {}) {
    const main = parseDatabaseUrl(url);
    this.options = resolveEngineOptions(options);
    this.url = main.redacted;
    this.secrets = [main, ...this.options.replicas].map((u) => u.password).filter((p): p is string => Boolean(p));
    const echo = this.options.echo;
    const secrets = this.secrets;
    const dialectOptions: Record<string, unknown> = { ...(this.options.sequelize?.dialectOptions as object | undefined) };
    if (this.options.statementTimeoutMs !== undefined) dialectOptions.statement_timeout = this.options.statementTimeoutMs;
    if (this.options.idleInTransactionTimeoutMs !== undefined) dialectOptions.idle_in_transaction_session_timeout = this.options.idleInTransactionTimeoutMs;
    if (this.options.applicationName !== undefined) dialectOptions.application_name = this.options.applicationName;
    if (main.ssl && dialectOptions.ssl === undefined) dialectOptions.ssl = true;
    const { pool } = this.options;
    const sequelizeOptions: SequelizeOptions = {
      logging: echo ? (sql: string) => echo(redact(sql, secrets)) : false,
      ...this.options.sequelize,
      dialect: 'postgres',
      dialectModule: guardedPg,
      dialectOptions,
      ...connectionFields(main),
      pool: { max: pool.max, min: pool.min, acquire: pool.acquireTimeoutMs, idle: pool.idleTimeoutMs, evict: Math.min(pool.idleTimeoutMs, 1000) },
    };
    if (this.options.replicas.length > 0) {
      sequelizeOptions.replication = { write: connectionFields(main), read: this.options.replicas.map(connectionFields) };
    }
    const EngineSequelize = scopedSequelizeClass(this as unknown as Engine, this.options.sequelizeClass);
    this.sequelize = new EngineSequelize(sequelizeOptions) as S;
  }

  /**
   * Experimental, for instrumentation (`@sessionlocal/otel`): run every statement of a session
   * through `wrap`, in the statement's async context (e.g. to make the session's span the parent
   * of the pg statement spans). `undefined` removes it.
   */
  setStatementWrapper(wrap: (<T>(session: Session, send: () => Promise<T>) => Promise<T>) | undefined): void {
    this.statementWrapper = wrap;
  }

  /** Pool and session counters. */
  stats(): EngineStats {
    const pools = this.pools();
    const sum = (key: keyof SequelizePool) => pools.reduce((n, p) => n + p[key], 0);
    return {
      pool: { size: sum('size'), idle: sum('available'), inUse: sum('using'), waiting: sum('waiting') },
      sessions: { open: this.holding.size, ...this.counters },
    };
  }

  /** One round trip to the database; resolves with its latency in milliseconds. */
  async ping(): Promise<number> {
    const started = performance.now();
    const connection = await this.acquire(false);
    let broken = false;
    try {
      await connection.query('SELECT 1');
    } catch (error) {
      broken = true;
      throw scrubError(error, this.secrets);
    } finally {
      this.release(connection, broken);
    }
    return performance.now() - started;
  }

  /** Run `fn` where queries outside any session are allowed even on a `strict` engine (migrations, seeding). */
  autocommit<T>(fn: () => T): T {
    return this.scope.run({ session: undefined, transaction: undefined, autocommit: true }, fn);
  }

  /**
   * Refuse new sessions (`EngineDisposedError`), wait up to `timeoutMs` for open sessions to
   * finish, roll back the rest by closing their connections, then close the pool.
   */
  dispose(options: { timeoutMs?: number } = {}): Promise<void> {
    this.disposing ??= this.disposeNow(options.timeoutMs ?? 10_000);
    return this.disposing;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /** @internal Acquire a pooled connection, mapping pool timeouts and scrubbing secrets. */
  async acquire(readOnly: boolean): Promise<PooledConnection> {
    if (this.disposed) throw new EngineDisposedError();
    try {
      const manager = (this.sequelize as unknown as { connectionManager: { getConnection(o: object): Promise<PooledConnection> } }).connectionManager;
      return await manager.getConnection(readOnly ? { type: 'SELECT' } : { type: 'RAW' });
    } catch (error) {
      if (error instanceof ConnectionAcquireTimeoutError) throw new PoolTimeoutError(this.options.pool.acquireTimeoutMs, error);
      throw scrubError(error, this.secrets);
    }
  }

  /** @internal Return a connection to the pool, or destroy it when it may carry state or is broken. */
  release(connection: PooledConnection, destroy: boolean): void {
    const manager = (this.sequelize as unknown as { connectionManager: { pool: { release(c: unknown): void; destroy(c: unknown): Promise<void> | void } } }).connectionManager;
    connection.uuid = undefined;
    // Only an idle connection goes back: no open or aborted transaction (pg reports the status byte).
    const status = typeof connection.getTransactionStatus === 'function' ? connection.getTransactionStatus() : 'I';
    if (destroy || connection._invalid || connection._ending || (status !== 'I' && status !== null)) {
      Promise.resolve(manager.pool.destroy(connection)).catch(() => {});
    } else {
      manager.pool.release(connection);
    }
  }

  /** @internal Called by sessions when they give their connection back. */
  sessionReleased(session: Session): void {
    this.holding.delete(session);
    if (this.holding.size === 0 && this.drainWaiters.length > 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  }

  /** @internal */
  log(sql: string): void {
    this.options.echo?.(redact(sql, this.secrets));
  }

  private pools(): SequelizePool[] {
    const pool = (this.sequelize as unknown as { connectionManager: { pool: SequelizePool & { read?: SequelizePool; write?: SequelizePool } } }).connectionManager.pool;
    if (pool.read && pool.write) return [pool.read, pool.write];
    return [pool];
  }

  private async disposeNow(timeoutMs: number): Promise<void> {
    this.disposed = true;
    if (this.holding.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.drainWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    await Promise.all([...this.holding].map((session) => session.terminate()));
    await this.sequelize.close();
  }
}

/**
 * `pg` with a `Client` that listens for 'error' from construction. Sequelize 6 attaches its own
 * listener only after `connect()` resolved; a backend terminated during connection setup would
 * otherwise emit an unhandled 'error' and crash the process. The client is marked invalid, so the
 * pool's `validate` refuses it and Sequelize's listener (once attached) destroys it.
 */
const guardedPg = Object.assign(Object.create(pg) as typeof pg, { Client: SessionClient });

function connectionFields(url: ParsedUrl) {
  return { host: url.host, port: url.port, database: url.database, username: url.username, password: url.password };
}

/**
 * Create an engine for a PostgreSQL URL. Validates eagerly (`ConfigError`); opens no connection.
 * @example
 * import { Sequelize } from 'sequelize-typescript';
 * const engine = createEngine(process.env.DATABASE_URL!, { sequelizeClass: Sequelize });
 * engine.sequelize.addModels([Author, Book]);
 */
export function createEngine<S extends Sequelize = Sequelize>(url: string, options?: EngineOptions<S>): Engine<S> {
  return new Engine<S>(url, options);
}

/**
 * Create an engine from `DATABASE_URL`, `DB_POOL_MAX`, `DB_POOL_MIN`, `DB_POOL_ACQUIRE_TIMEOUT_MS`,
 * `DB_POOL_IDLE_TIMEOUT_MS`, `DB_STATEMENT_TIMEOUT_MS` and `DB_ECHO`.
 */
export function engineFromEnv<S extends Sequelize = Sequelize>(env: NodeJS.ProcessEnv = process.env, overrides: EngineOptions<S> = {}): Engine<S> {
  const { url, options } = optionsFromEnv(env);
  const merged: EngineOptions<S> = { ...(options as EngineOptions<S>), ...overrides, pool: { ...options.pool, ...overrides.pool } };
  return new Engine<S>(url, merged);
}

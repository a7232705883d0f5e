import pg from 'pg';
import type { Sequelize, Options as SequelizeOptions } from 'sequelize';
import { ConnectionAcquireTimeoutError } from 'sequelize';
import { optionsFromEnv, parseDatabaseUrl, replyDeadlineMs, resolveEngineOptions, type EngineOptions, type ParsedUrl, type ResolvedEngineOptions } from './config.js';
import { CommitOutcomeUnknownError, EngineDisposedError, PoolTimeoutError, ReplicaUnavailableError, SessionClosedError, SessionLocalError } from './errors.js';
import { redact, scrubError } from './redact.js';
import { ReplicaSet, type PoolStats, type ReplicaPing, type ReplicaStats } from './replicas.js';
import { createScopeStorage, type ScopeStorage } from './scope.js';
import { SessionClient, transactionStatus, type SessionClientConfig } from './pipelined-begin.js';
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
  /** Reply deadline of the statements written from now on (see `SessionClient`). */
  replyTimeoutMs?: number;
  idleSince?: number;
}

/** What `engine.stats()` reports. */
export interface EngineStats {
  /** All pools together (the primary's and every replica's). */
  pool: PoolStats;
  /** Each pool on its own, with `replicas` only: the primary's, and per replica its pool and health. */
  pools?: { primary: PoolStats; replicas: ReplicaStats[] };
  sessions: { open: number; opened: number; committed: number; rolledBack: number };
}

/** What `engine.ping({ replicas: true })` reports. */
export interface PingReport {
  /** Round trip to the primary (ms). */
  primaryMs: number;
  replicas: ReplicaPing[];
}

interface SequelizePool {
  size: number;
  available: number;
  using: number;
  waiting: number;
  release(connection: unknown): void;
  destroy(connection: unknown): Promise<void> | void;
}

interface SequelizeConnectionManager {
  pool: SequelizePool;
  getConnection(options: object): Promise<PooledConnection>;
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
  private releaseWaiters: Array<() => void> = [];
  /** Reply deadline of statements outside sessions and of sessions without their own settings. */
  private readonly defaultReplyTimeoutMs: number | undefined;
  /** @internal The replica pools (undefined without `replicas`). */
  readonly replicaSet: ReplicaSet | undefined;

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
      dialectModule: clientModule(this.options),
      dialectOptions,
      ...connectionFields(main),
      pool: { max: pool.max, min: pool.min, acquire: pool.acquireTimeoutMs, idle: pool.idleTimeoutMs, evict: Math.min(pool.idleTimeoutMs, 1000) },
    };
    const EngineSequelize = scopedSequelizeClass(this as unknown as Engine, this.options.sequelizeClass);
    this.sequelize = new EngineSequelize(sequelizeOptions) as S;
    // one pool per replica, next to Sequelize's own (the primary's): only read-only sessions use them
    if (this.options.replicas.length > 0) this.replicaSet = new ReplicaSet(this.options, this.manager() as never, this.secrets);
    this.defaultReplyTimeoutMs = replyDeadlineMs(this.options);
    keepSessionLocalErrors(this.sequelize);
  }

  /**
   * Experimental, for instrumentation (`@sessionlocal/otel`): run every statement of a session
   * through `wrap`, in the statement's async context (e.g. to make the session's span the parent
   * of the pg statement spans). `undefined` removes it.
   */
  setStatementWrapper(wrap: (<T>(session: Session, send: () => Promise<T>) => Promise<T>) | undefined): void {
    this.statementWrapper = wrap;
  }

  /** Pool and session counters: all pools together (`pool`) and each on its own (`pools`). */
  stats(): EngineStats {
    const main = this.manager().pool;
    const primary = { size: main.size, idle: main.available, inUse: main.using, waiting: main.waiting };
    const replicas = this.replicaSet?.stats() ?? [];
    const sum = (key: keyof PoolStats) => replicas.reduce((n, r) => n + r[key], primary[key]);
    return {
      pool: { size: sum('size'), idle: sum('idle'), inUse: sum('inUse'), waiting: sum('waiting') },
      ...(this.replicaSet && { pools: { primary, replicas } }),
      sessions: { open: this.holding.size, ...this.counters },
    };
  }

  /**
   * One round trip to the primary; resolves with its latency in milliseconds. With
   * `{ replicas: true }`, every replica is health-checked too (their states are updated; a replica
   * failing does not reject, its `error` says why).
   */
  ping(): Promise<number>;
  ping(options: { replicas: true }): Promise<PingReport>;
  async ping(options?: { replicas?: boolean }): Promise<number | PingReport> {
    if (options?.replicas) {
      const [primaryMs, replicas] = await Promise.all([this.ping(), this.replicaSet?.ping() ?? Promise.resolve([])]);
      return { primaryMs, replicas };
    }
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
   * finish, roll back the rest by closing their connections, then close the pool. A session
   * whose COMMIT is already sent is let finish (up to its reply deadline, else 5 s, plus 1 s);
   * past that its commit fails with `CommitOutcomeUnknownError`, never a reported rollback.
   */
  dispose(options: { timeoutMs?: number } = {}): Promise<void> {
    this.disposing ??= this.disposeNow(options.timeoutMs ?? 10_000);
    return this.disposing;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  /**
   * @internal Acquire a pooled connection, mapping pool timeouts and scrubbing secrets. With a
   * session: a connection that arrives after the session's request was aborted goes straight
   * back (nothing is opened for a client that left), and the connection gets the session's reply
   * deadline. A connection idle longer than `pool.validateIdleMs` is checked with `SELECT 1`
   * first; a dead one is destroyed and another one taken. `validatePooled`: every pooled (not new)
   * connection is checked so (a retry after a connection died: its neighbours may be dead too).
   */
  async acquire(readOnly: boolean, session?: Session, options: { validatePooled?: boolean } = {}): Promise<PooledConnection> {
    if (this.disposed) throw new EngineDisposedError();
    abandonedRequest(session);
    const manager = this.manager();
    const { validateIdleMs, max, acquireTimeoutMs } = this.options.pool;
    // a hot standby refuses SERIALIZABLE ("cannot use serializable mode in a hot standby"): such a session reads on the primary
    const replicas = readOnly && session?.options.isolationLevel !== 'SERIALIZABLE' ? this.replicaSet : undefined;
    const started = performance.now();
    let reconnects = 0;
    for (let attempt = 0; ; attempt++) {
      let connection: PooledConnection;
      try {
        connection = (replicas && (await replicas.connection(session))) || (await manager.getConnection({ type: 'RAW' }));
      } catch (error) {
        if (error instanceof SessionLocalError) throw error;
        if (error instanceof ConnectionAcquireTimeoutError) throw new PoolTimeoutError(acquireTimeoutMs, error);
        // A connection attempt that timed out or was cut (often one started while the network was
        // down, handed to this waiter): nothing ran, try a new one while the acquire deadline lasts.
        // The pool rejects its first waiter with the failure of any attempt, so one waiter can be
        // handed the failures of all `max` attempts left over from a silence, plus its own. A try
        // waits at most acquireTimeoutMs: retrying only within connectTimeoutMs ends acquiring
        // within acquireTimeoutMs + connectTimeoutMs.
        if (reconnects <= max && transientConnectFailure(error) && performance.now() - started < (this.options.connectTimeoutMs || acquireTimeoutMs)) {
          reconnects++;
          abandonedRequest(session);
          continue;
        }
        throw scrubError(error, this.secrets);
      }
      const idleSince = connection.idleSince;
      connection.idleSince = undefined;
      try {
        // disposed while this waited: dispose does not see a session still acquiring, so it is refused here
        if (this.disposed) throw new EngineDisposedError();
        abandonedRequest(session);
      } catch (error) {
        this.release(connection, false);
        throw error;
      }
      const stale = idleSince !== undefined && (options.validatePooled || (validateIdleMs > 0 && performance.now() - idleSince >= validateIdleMs));
      if (stale && attempt <= max) {
        if (!(await this.validate(connection))) {
          this.release(connection, true);
          continue;
        }
      }
      if (connection instanceof SessionClient) {
        const settings = session?.options.settings;
        connection.replyTimeoutMs = settings ? replyDeadlineMs(this.options, settings) : this.defaultReplyTimeoutMs;
      }
      return connection;
    }
  }

  /** @internal Return a connection to the pool, or destroy it when it may carry state or is broken. */
  release(connection: PooledConnection, destroy: boolean): void {
    const manager = this.manager();
    connection.uuid = undefined;
    // Only an idle connection goes back: no open or aborted transaction (pg reports the status byte).
    const status = transactionStatus(connection);
    const broken = destroy || connection._invalid || connection._ending || (status !== 'I' && status !== null);
    if (!broken && connection instanceof SessionClient) {
      connection.replyTimeoutMs = connection.defaultReplyTimeoutMs;
      connection.idleSince = performance.now();
    }
    if (this.replicaSet?.release(connection, Boolean(broken))) return;
    if (broken) {
      Promise.resolve(manager.pool.destroy(connection)).catch(() => {});
    } else {
      manager.pool.release(connection);
    }
  }

  /** A `SELECT 1` within the connect deadline (or 5 s): false when the connection is dead. */
  private async validate(connection: PooledConnection): Promise<boolean> {
    if (!(connection instanceof SessionClient)) return true;
    connection.replyTimeoutMs = this.options.connectTimeoutMs || 5_000;
    try {
      await connection.query('SELECT 1');
      return !(connection as PooledConnection)._invalid;
    } catch {
      return false;
    } finally {
      connection.replyTimeoutMs = connection.defaultReplyTimeoutMs;
    }
  }

  /** @internal Called by sessions when they give their connection back. */
  sessionReleased(session: Session): void {
    this.holding.delete(session);
    if (this.releaseWaiters.length > 0) for (const notify of this.releaseWaiters.splice(0)) notify();
    if (this.holding.size === 0 && this.drainWaiters.length > 0) {
      for (const resolve of this.drainWaiters.splice(0)) resolve();
    }
  }

  /** @internal */
  log(sql: string): void {
    this.options.echo?.(redact(sql, this.secrets));
  }

  private manager(): SequelizeConnectionManager {
    return (this.sequelize as unknown as { connectionManager: SequelizeConnectionManager }).connectionManager;
  }

  private async disposeNow(timeoutMs: number): Promise<void> {
    this.disposed = true;
    if (this.holding.size > 0) await this.waitFor(() => this.holding.size === 0, timeoutMs);
    // A COMMIT already sent is let finish (bounded by its reply deadline, else 5 s): terminating
    // it would report a rollback while the server may have committed.
    const committing = () => [...this.holding].filter((session) => isCommitting(session.heldConnection));
    const inFlight = committing();
    const others = [...this.holding].filter((session) => !inFlight.includes(session));
    await Promise.all(others.map((session) => session.terminate()));
    if (inFlight.length > 0) {
      const graceMs = Math.max(...inFlight.map((session) => session.heldConnection?.replyTimeoutMs ?? 0)) || 5_000;
      await this.waitFor(() => committing().length === 0, graceMs + 1_000);
      for (const session of committing()) {
        const connection = session.heldConnection;
        if (connection instanceof SessionClient) connection.abandon(new CommitOutcomeUnknownError(session.id, new EngineDisposedError()));
      }
      await this.waitFor(() => this.holding.size === 0, 1_000);
    }
    await Promise.all([...this.holding].map((session) => session.terminate()));
    await this.replicaSet?.close();
    await this.sequelize.close();
  }

  /** Resolve when `done()` holds (checked whenever a session releases its connection), or after `ms`. */
  private async waitFor(done: () => boolean, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (!done()) {
      const left = deadline - performance.now();
      if (left <= 0) return;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.releaseWaiters.push(resolve);
        timer = setTimeout(resolve, Math.min(left, 100));
      });
      clearTimeout(timer);
    }
  }
}

function isCommitting(connection: PooledConnection | undefined): boolean {
  return connection instanceof SessionClient && connection.inFlight !== undefined && /^\s*(COMMIT|END)\b/i.test(connection.inFlight);
}

const TRANSIENT_CONNECT = /timeout expired|timed out|Connection terminated unexpectedly|ECONNRESET|EPIPE/i;

/** A connection attempt that failed on the way (deadline, reset), not a refusal (auth, unknown database, shutdown). */
function transientConnectFailure(error: unknown): boolean {
  const e = error as { message?: unknown; parent?: { message?: unknown; code?: unknown } } | undefined;
  if (typeof e?.parent?.code === 'string' && /^[0-9A-DF-Z][0-9A-Z]{4}$/.test(e.parent.code)) return false; // the server answered
  return TRANSIENT_CONNECT.test(String(e?.parent?.message ?? '')) || TRANSIENT_CONNECT.test(String(e?.message ?? ''));
}

/** Throw the abort reason of a session whose request was abandoned (client gone). */
function abandonedRequest(session: Session | undefined): void {
  if (session?.abortRequested) throw session.signal.reason ?? new SessionClosedError(session.id);
}

/**
 * Sequelize wraps every driver error into a `DatabaseError`; sessionlocal's own errors raised at
 * the driver level (`ReplyTimeoutError`, `CommitOutcomeUnknownError`) reach the caller as they are.
 */
function keepSessionLocalErrors(sequelize: Sequelize): void {
  const dialect = (sequelize as unknown as { dialect: { Query: new (...args: unknown[]) => { formatError(error: unknown, stack: unknown): unknown } } }).dialect;
  const Base = dialect.Query;
  dialect.Query = class SessionLocalQuery extends Base {
    override formatError(error: unknown, stack: unknown): unknown {
      return error instanceof SessionLocalError ? error : super.formatError(error, stack);
    }
  };
}

/**
 * `pg` with a `Client` (`SessionClient`) that listens for 'error' from construction. Sequelize 6
 * attaches its own listener only after `connect()` resolved; a backend terminated during
 * connection setup would otherwise emit an unhandled 'error' and crash the process. The client is
 * marked invalid, so the pool's `validate` refuses it and Sequelize's listener (once attached)
 * destroys it. The engine's connect deadline, TCP keepalive and reply deadline are set here
 * (Sequelize passes only some `pg` options through).
 */
function clientModule(options: ResolvedEngineOptions): typeof pg {
  const own: SessionClientConfig = {
    connectionTimeoutMillis: options.connectTimeoutMs,
    keepAlive: options.keepAliveMs > 0,
    keepAliveInitialDelayMillis: options.keepAliveMs,
    replyTimeoutMs: replyDeadlineMs(options),
  };
  class EngineClient extends SessionClient {
    constructor(config?: SessionClientConfig) {
      super({ ...config, ...own });
    }

    /** A statement on a connection closed because its replica was marked down fails with that reason (not pg's "not queryable"). */
    // biome-ignore lint/suspicious/noExplicitAny: pg's overloads
    override query(config: any, values?: any, callback?: any): any {
      const reason = (this as unknown as { abandoned?: unknown }).abandoned;
      if (!(reason instanceof ReplicaUnavailableError)) return super.query(config, values, callback);
      const done = typeof values === 'function' ? values : callback;
      if (typeof done !== 'function') return Promise.reject(reason);
      process.nextTick(() => done(reason));
      return undefined;
    }
  }
  return Object.assign(Object.create(pg) as typeof pg, { Client: EngineClient });
}

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
 * `DB_POOL_IDLE_TIMEOUT_MS`, `DB_POOL_VALIDATE_IDLE_MS`, `DB_STATEMENT_TIMEOUT_MS`,
 * `DB_CONNECT_TIMEOUT_MS`, `DB_KEEPALIVE_MS`, `DB_REPLY_TIMEOUT_MS`, `DB_REPLY_TIMEOUT_MARGIN_MS`, `DB_ECHO`,
 * `DATABASE_REPLICA_URLS` (comma- or space-separated), `DB_REPLICA_MAX_LAG_MS`, `DB_REPLICA_FALLBACK`
 * (`primary` | `error`), `DB_REPLICA_CHECK_INTERVAL_MS` and `DB_REPLICA_CHECK_TIMEOUT_MS`.
 */
export function engineFromEnv<S extends Sequelize = Sequelize>(env: NodeJS.ProcessEnv = process.env, overrides: EngineOptions<S> = {}): Engine<S> {
  const { url, options } = optionsFromEnv(env);
  const merged: EngineOptions<S> = {
    ...(options as EngineOptions<S>),
    ...overrides,
    pool: { ...options.pool, ...overrides.pool },
    ...((options.replicaOptions || overrides.replicaOptions) && { replicaOptions: { ...options.replicaOptions, ...overrides.replicaOptions } }),
  };
  return new Engine<S>(url, merged);
}

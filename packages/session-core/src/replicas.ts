import pg from 'pg';
import type { ParsedUrl, ResolvedEngineOptions } from './config.js';
import type { PooledConnection } from './engine.js';
import { PoolTimeoutError, ReplicaUnavailableError, sqlState, type ReplicaProblem } from './errors.js';
import { SessionClient } from './pipelined-begin.js';
import { redact } from './redact.js';
import type { Session } from './session.js';

/** Size and use of one connection pool. */
export interface PoolStats {
  size: number;
  idle: number;
  inUse: number;
  waiting: number;
}

/** `unknown`: not checked yet; `up`; `down`: refused, reset or silent (checked again every `checkIntervalMs`); `lagging`: beyond `maxLagMs`. */
export type ReplicaState = 'unknown' | 'up' | 'down' | 'lagging';

/** One replica in `engine.stats().pools.replicas`. */
export interface ReplicaStats extends PoolStats {
  /** The replica's URL, password shown as `***`. */
  url: string;
  state: ReplicaState;
  /** Replay lag at the last check (ms); `null` when unknown. */
  lagMs: number | null;
  /** Whether the replica was streaming from the primary at the last check. */
  streaming: boolean | null;
  /** The WAL position replayed at the last check (`pg_last_wal_replay_lsn()`). */
  replayLsn: string | null;
  /** Why it is down or lagging. */
  cause?: string;
  /** Milliseconds since the last check (`null`: never checked). */
  checkedAgoMs: number | null;
  /** Connections this replica handed to read-only sessions since the engine was created (the primary served the other read-only sessions). */
  served: number;
}

/** What `engine.ping({ replicas: true })` reports per replica. */
export interface ReplicaPing {
  url: string;
  state: ReplicaState;
  /** Round trip of the check (ms), when it answered. */
  latencyMs?: number;
  lagMs?: number | null;
  error?: string;
}

interface SequelizePool {
  size: number;
  available: number;
  using: number;
  waiting: number;
  acquire(): Promise<PooledConnection>;
  release(connection: PooledConnection): void;
  destroy(connection: PooledConnection): Promise<void> | void;
  destroyAllNow(): Promise<void>;
}

type PoolConstructor = new (options: Record<string, unknown>) => SequelizePool;

interface ConnectionManager {
  pool: SequelizePool;
  config: Record<string, unknown> & { pool: { validate?: unknown; maxUses?: number } };
  _connect(config: Record<string, unknown>): Promise<PooledConnection>;
  _disconnect(connection: PooledConnection): Promise<void>;
}

interface ReplicaConnection extends PooledConnection {
  replica?: Replica;
  replicaGeneration?: number;
}

/**
 * What a check reads on a replica: whether it is a standby, the position it replayed, whether it
 * streams from the primary, whether replay has caught up with what it received, and the age of
 * the last replayed commit (the classic lag measure, used while replay is behind).
 */
const CHECK_SQL = `SELECT pg_is_in_recovery() AS recovery,
  pg_last_wal_replay_lsn()::text AS replay_lsn,
  EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming,
  pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() AS caught_up,
  floor(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::int8 AS replay_age_ms`;

/** Whether the replica has replayed `$1` (a primary, e.g. a replica pointed at the primary, has everything it wrote). */
const REPLAYED_SQL = `SELECT l::text AS lsn, l >= $1::pg_lsn AS ok FROM (SELECT COALESCE(pg_last_wal_replay_lsn(), CASE WHEN NOT pg_is_in_recovery() THEN pg_current_wal_insert_lsn() END) AS l) s`;

/** Retry a down replica after this long when background checks are off. */
const RETRY_WITHOUT_CHECKS_MS = 5_000;

class Replica {
  state: ReplicaState = 'unknown';
  generation = 0;
  readonly inUse = new Set<ReplicaConnection>();
  lagMs: number | undefined;
  replayLsn: string | undefined;
  streaming: boolean | undefined;
  cause: string | undefined;
  downSince: number | undefined;
  caughtUpAt: number | undefined;
  checkedAt: number | undefined;
  checker: pg.Client | undefined;
  checking: Promise<ReplicaPing> | undefined;
  served = 0;
  readonly downWaiters = new Set<(error: Error) => void>();

  constructor(
    readonly url: ParsedUrl,
    readonly pool: SequelizePool,
  ) {}

  get name(): string {
    return this.url.redacted;
  }
}

/**
 * The read replicas of an engine: one pool per replica, health checks on a connection of their
 * own, lag measurement, routing of read-only sessions (round robin over usable replicas, with
 * the read-your-writes position check) and fallback to the primary.
 */
export class ReplicaSet {
  private readonly replicas: Replica[];
  private next = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly options: ResolvedEngineOptions,
    manager: ConnectionManager,
    private readonly secrets: readonly string[],
  ) {
    const Pool = manager.pool.constructor as PoolConstructor;
    const { pool } = options;
    this.replicas = options.replicas.map((url) => {
      const config = { ...manager.config, replication: undefined, host: url.host, port: url.port, database: url.database, username: url.username, password: url.password };
      let replica: Replica | undefined;
      const sequelizePool = new Pool({
        name: `sessionlocal:replica:${url.redacted}`,
        create: async () => {
          const connection = (await manager._connect(config)) as ReplicaConnection;
          connection.replica = replica;
          connection.replicaGeneration = replica?.generation;
          return connection;
        },
        destroy: (connection: PooledConnection) => manager._disconnect(connection),
        validate: manager.config.pool.validate,
        max: pool.max,
        min: pool.min,
        acquireTimeoutMillis: pool.acquireTimeoutMs,
        idleTimeoutMillis: pool.idleTimeoutMs,
        reapIntervalMillis: Math.min(pool.idleTimeoutMs, 1000),
        maxUses: manager.config.pool.maxUses,
      });
      replica = new Replica(url, sequelizePool);
      return replica;
    });
  }

  /**
   * A replica connection for a read-only session, or `undefined` when the primary must serve it:
   * no replica usable and `fallback: 'primary'`, or (read-your-writes) none replayed the
   * session's `minLsn` within `maxWaitMs`. Throws `ReplicaUnavailableError` with `fallback: 'error'`.
   */
  async connection(session: Session | undefined): Promise<PooledConnection | undefined> {
    this.startChecks();
    const minLsn = session?.options.minLsn;
    const maxWaitMs = session?.options.readYourWrites?.maxWaitMs ?? 50;
    const problems: ReplicaProblem[] = [];
    const count = this.replicas.length;
    const start = this.next++ % count;
    // one wait for the position, whichever replicas it is spent on: a forged token costs at most maxWaitMs
    const waitUntil = performance.now() + maxWaitMs;
    // round robin, but a replica with a free (or not yet opened) connection before a busy one: waiting
    // out a busy pool while another has room would cost the acquire deadline for nothing
    const max = this.options.pool.max;
    const busy = (r: Replica) => r.pool.available === 0 && r.pool.size >= max;
    const order = Array.from({ length: count }, (_, i) => this.replicas[(start + i) % count] as Replica).sort((a, b) => Number(busy(a)) - Number(busy(b)));
    for (const replica of order) {
      const skip = this.unusable(replica);
      if (skip) {
        problems.push(skip);
        continue;
      }
      let connection: ReplicaConnection;
      try {
        connection = await this.take(replica);
      } catch (error) {
        if (error instanceof PoolTimeoutError) {
          // every connection of its pool in use: the session waited its acquire deadline and gets the
          // PoolTimeoutError naming the replica (waiting again elsewhere would exceed that deadline)
          if (replica.pool.using >= max) throw error;
          // no connection could be opened in time (a replica going silent): the next one, or the fallback
          problems.push({ url: replica.name, state: 'down', cause: `no connection within the acquire deadline (${describe(error, this.secrets)})` });
          continue;
        }
        if (!(error instanceof ReplicaUnavailableError)) this.markDown(replica, describe(error, this.secrets), sqlState(error) !== '53300');
        problems.push({ url: replica.name, state: 'down', cause: replica.cause ?? describe(error, this.secrets) });
        continue;
      }
      if (minLsn === undefined) {
        replica.served++;
        return connection;
      }
      let replayed: boolean;
      try {
        replayed = await this.replayed(replica, connection, minLsn, waitUntil, session);
      } catch (error) {
        this.release(connection, true);
        this.markDown(replica, describe(error, this.secrets), true);
        problems.push({ url: replica.name, state: 'down', cause: replica.cause ?? 'failed' });
        continue;
      }
      if (replayed) {
        replica.served++;
        return connection;
      }
      this.release(connection, false);
      // the client left while the session waited for the replay position
      if (session?.abortRequested) throw session.signal.reason ?? new Error('aborted');
    }
    // read-your-writes: the primary has the session's writes, whatever the fallback setting
    if (minLsn !== undefined && problems.length < count) return undefined;
    if (this.options.replicaOptions.fallback === 'primary') return undefined;
    throw new ReplicaUnavailableError(problems, this.retryAfterSeconds());
  }

  /**
   * The error for a read-only session whose replica connection was lost under it (its backend
   * terminated, the standby shutting down, the connection reset): `ReplicaUnavailableError` naming
   * the replica, with `cause` the error the session saw; `undefined` when `connection` is not a
   * replica's. Nothing of a read-only session was written, so the client may simply retry (503).
   */
  lost(connection: PooledConnection, cause: unknown): ReplicaUnavailableError | undefined {
    const replica = (connection as ReplicaConnection).replica;
    if (!replica) return undefined;
    if (cause instanceof ReplicaUnavailableError) return cause;
    return new ReplicaUnavailableError([{ url: replica.name, state: 'down', cause: `connection lost: ${describe(cause, this.secrets)}` }], this.retryAfterSeconds(), cause);
  }

  /** Whether `connection` came from a replica pool; if so, give it back there (or destroy it). */
  release(connection: PooledConnection, destroy: boolean): boolean {
    const replica = (connection as ReplicaConnection).replica;
    if (!replica) return false;
    replica.inUse.delete(connection);
    try {
      if (destroy || this.closed || (connection as ReplicaConnection).replicaGeneration !== replica.generation) {
        Promise.resolve(replica.pool.destroy(connection)).catch(() => {});
      } else {
        replica.pool.release(connection);
      }
    } catch {
      // the pool was closed under it (dispose): the connection goes with the pool
      connection.end().catch(() => undefined);
    }
    return true;
  }

  /** Per replica: its pool and health. */
  stats(): ReplicaStats[] {
    const now = performance.now();
    return this.replicas.map((r) => ({
      url: r.name,
      size: r.pool.size,
      idle: r.pool.available,
      inUse: r.pool.using,
      waiting: r.pool.waiting,
      state: r.state,
      lagMs: r.lagMs === undefined || !Number.isFinite(r.lagMs) ? null : Math.round(r.lagMs),
      streaming: r.streaming ?? null,
      replayLsn: r.replayLsn ?? null,
      ...(r.cause !== undefined && (r.state === 'down' || r.state === 'lagging') && { cause: r.cause }),
      checkedAgoMs: r.checkedAt === undefined ? null : Math.round(now - r.checkedAt),
      served: r.served,
    }));
  }

  /** Check every replica now (what a background check does); their states are updated. */
  ping(): Promise<ReplicaPing[]> {
    this.startChecks();
    return Promise.all(this.replicas.map((r) => this.check(r)));
  }

  /** Stop the checks, close the check connections and every replica pool. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await Promise.all(
      this.replicas.map(async (r) => {
        await r.checking?.catch(() => undefined);
        const checker = r.checker;
        r.checker = undefined;
        await checker?.end().catch(() => undefined);
        await r.pool.destroyAllNow().catch(() => undefined);
      }),
    );
  }

  private unusable(replica: Replica): ReplicaProblem | undefined {
    if (replica.state === 'down') {
      const retry = this.options.replicaOptions.checkIntervalMs === 0 && performance.now() - (replica.downSince ?? 0) >= RETRY_WITHOUT_CHECKS_MS;
      if (!retry) return { url: replica.name, state: 'down', cause: `${replica.cause ?? 'down'} (down for ${Math.round(performance.now() - (replica.downSince ?? 0))} ms)` };
    }
    const max = this.options.replicaOptions.maxLagMs;
    if (max !== undefined && replica.lagMs !== undefined && replica.lagMs > max) {
      return { url: replica.name, state: 'lagging', cause: `${lagText(replica.lagMs)} behind (maxLagMs ${max})` };
    }
    return undefined;
  }

  /** A connection of `replica`'s pool; rejected at once when the replica is marked down while waiting. */
  private async take(replica: Replica): Promise<ReplicaConnection> {
    for (let attempt = 0; ; attempt++) {
      const acquiring = replica.pool.acquire() as Promise<ReplicaConnection>;
      let onDown: ((error: Error) => void) | undefined;
      const down = new Promise<never>((_, reject) => {
        onDown = reject;
      });
      replica.downWaiters.add(onDown as (error: Error) => void);
      let connection: ReplicaConnection;
      try {
        connection = await Promise.race([acquiring, down]);
      } catch (error) {
        acquiring.then(
          (late) => replica.pool.release(late),
          () => undefined,
        );
        // sequelize-pool's acquire timeout: a `TimeoutError` class whose `name` is still 'Error'
        if (isPoolTimeout(error)) throw new PoolTimeoutError(this.options.pool.acquireTimeoutMs, error, replica.name);
        throw error;
      } finally {
        replica.downWaiters.delete(onDown as (error: Error) => void);
      }
      // made before the replica was last marked down: it may point at a server that is gone
      if (connection.replicaGeneration !== replica.generation && attempt < 1 + this.options.pool.max) {
        Promise.resolve(replica.pool.destroy(connection)).catch(() => {});
        continue;
      }
      connection.replicaGeneration = replica.generation;
      replica.inUse.add(connection);
      return connection;
    }
  }

  /** Poll the replica's replay position until it reaches `minLsn`, until `deadline` (once at least). */
  private async replayed(replica: Replica, connection: ReplicaConnection, minLsn: string, deadline: number, session: Session | undefined): Promise<boolean> {
    if (replica.replayLsn !== undefined && lsnAtLeast(replica.replayLsn, minLsn)) return true;
    const client = connection as SessionClient;
    const previous = client.replyTimeoutMs;
    if (client instanceof SessionClient) client.replyTimeoutMs = this.options.replicaOptions.checkTimeoutMs;
    try {
      for (let pause = 1; ; pause = Math.min(pause * 2, 10)) {
        const result = await connection.query({ text: REPLAYED_SQL, values: [minLsn] });
        const row = result.rows[0] as { lsn: string | null; ok: boolean | null } | undefined;
        if (row?.lsn && (replica.replayLsn === undefined || lsnAtLeast(row.lsn, replica.replayLsn))) replica.replayLsn = row.lsn;
        if (row?.ok) return true;
        const left = deadline - performance.now();
        if (left <= 0 || session?.abortRequested) return false;
        await sleep(Math.min(pause, left));
      }
    } finally {
      if (client instanceof SessionClient) client.replyTimeoutMs = previous;
    }
  }

  private startChecks(): void {
    if (this.timer || this.closed || this.options.replicaOptions.checkIntervalMs === 0) return;
    this.timer = setInterval(() => {
      for (const replica of this.replicas) if (!replica.checking) void this.check(replica);
    }, this.options.replicaOptions.checkIntervalMs);
    this.timer.unref();
    for (const replica of this.replicas) if (!replica.checking) void this.check(replica);
  }

  private check(replica: Replica): Promise<ReplicaPing> {
    replica.checking ??= this.checkNow(replica).finally(() => {
      replica.checking = undefined;
    });
    return replica.checking;
  }

  private async checkNow(replica: Replica): Promise<ReplicaPing> {
    const timeoutMs = this.options.replicaOptions.checkTimeoutMs;
    const started = performance.now();
    try {
      const client = replica.checker ?? (await this.connectChecker(replica, timeoutMs));
      const row = await withDeadline(client.query(CHECK_SQL), timeoutMs, () => destroyClient(client));
      if (this.closed) return { url: replica.name, state: replica.state };
      this.observe(replica, row.rows[0] as CheckRow);
      return { url: replica.name, state: replica.state, latencyMs: performance.now() - started, lagMs: replica.lagMs ?? null };
    } catch (error) {
      const checker = replica.checker;
      replica.checker = undefined;
      if (checker) destroyClient(checker);
      if (this.closed) return { url: replica.name, state: replica.state };
      const cause = error instanceof DeadlineError ? `no reply to a health check within ${timeoutMs} ms` : describe(error, this.secrets);
      this.markDown(replica, cause, true);
      return { url: replica.name, state: replica.state, error: cause };
    }
  }

  private async connectChecker(replica: Replica, timeoutMs: number): Promise<pg.Client> {
    const { url } = replica;
    const client = new pg.Client({
      host: url.host,
      port: url.port,
      database: url.database,
      user: url.username,
      password: url.password,
      ssl: url.ssl ? true : undefined,
      connectionTimeoutMillis: timeoutMs,
      application_name: this.options.applicationName ? `${this.options.applicationName.slice(0, 50)} check` : 'sessionlocal check',
    });
    client.on('error', () => {
      if (replica.checker === client) replica.checker = undefined;
    });
    await withDeadline(client.connect(), timeoutMs + 100, () => destroyClient(client));
    // disposed while connecting: the connection must not outlive the engine
    if (this.closed) {
      destroyClient(client);
      throw new Error('the engine was disposed');
    }
    replica.checker = client;
    return client;
  }

  private observe(replica: Replica, row: CheckRow): void {
    const now = performance.now();
    replica.checkedAt = now;
    const wasStreaming = replica.streaming;
    replica.streaming = row.recovery ? row.streaming : undefined;
    if (row.replay_lsn) replica.replayLsn = row.replay_lsn;
    const age = row.replay_age_ms === null ? undefined : Number(row.replay_age_ms);
    let lag: number | undefined;
    if (!row.recovery) {
      lag = 0; // not a standby (a promoted replica, or the primary itself)
      replica.caughtUpAt = now;
    } else if (row.streaming && row.caught_up) {
      lag = 0;
      replica.caughtUpAt = now;
    } else if (row.streaming) {
      // replay is behind what arrived: the age of the last replayed commit, at most the time since it was last caught up
      const since = replica.caughtUpAt === undefined ? undefined : now - replica.caughtUpAt;
      lag = age === undefined ? since : since === undefined ? age : Math.min(age, since);
    } else {
      // not streaming (primary down or unreachable): it gets staler from the moment it was last caught up
      lag = replica.caughtUpAt !== undefined ? now - replica.caughtUpAt : (age ?? Number.POSITIVE_INFINITY);
    }
    replica.lagMs = lag;
    const max = this.options.replicaOptions.maxLagMs;
    const lagging = max !== undefined && lag !== undefined && lag > max;
    this.setState(replica, lagging ? 'lagging' : 'up', lagging ? `${lagText(lag as number)} behind (maxLagMs ${max})` : undefined, wasStreaming);
  }

  /** Mark `replica` down: waiting acquires fall over, its connections in use are closed (their sessions get `ReplicaUnavailableError`). */
  private markDown(replica: Replica, cause: string, closeInUse: boolean): void {
    if (this.closed) return;
    const wasDown = replica.state === 'down';
    replica.generation++;
    if (!wasDown) replica.downSince = performance.now();
    replica.streaming = undefined;
    const error = new ReplicaUnavailableError([{ url: replica.name, state: 'down', cause }], this.retryAfterSeconds());
    for (const reject of [...replica.downWaiters]) reject(error);
    replica.downWaiters.clear();
    if (closeInUse) {
      for (const connection of replica.inUse) if (connection instanceof SessionClient) connection.abandon(error);
    }
    this.setState(replica, 'down', cause, undefined);
  }

  /** `wasStreaming`: the streaming flag before this observation (a change is reported too). */
  private setState(replica: Replica, state: ReplicaState, cause: string | undefined, wasStreaming: boolean | undefined): void {
    const before = replica.state;
    replica.state = state;
    replica.cause = cause;
    if (state !== 'down') replica.downSince = undefined;
    const streamingChanged = state !== 'down' && wasStreaming !== undefined && replica.streaming !== wasStreaming;
    if (before === state && !streamingChanged) return;
    if (before === 'unknown' && state === 'up') return;
    const event = {
      url: replica.name,
      state: state as 'up' | 'down' | 'lagging',
      ...(replica.streaming !== undefined && { streaming: replica.streaming }),
      ...(cause !== undefined && { cause }),
      ...(replica.lagMs !== undefined && { lagMs: Math.round(replica.lagMs) }),
    };
    const listener = this.options.replicaOptions.onStateChange;
    if (listener) {
      try {
        listener(event);
      } catch {
        // a listener must not break routing
      }
    } else if (before !== state && (state === 'down' || state === 'lagging')) {
      process.emitWarning(
        `sessionlocal: read replica ${replica.name} is ${state} (${cause}); read-only sessions ${this.options.replicaOptions.fallback === 'primary' ? 'use another replica or the primary' : 'fail with ReplicaUnavailableError'} until it recovers`,
      );
    } else if (streamingChanged && replica.streaming === false) {
      process.emitWarning(`sessionlocal: read replica ${replica.name} stopped streaming from the primary; its reads get staler (set replicaOptions.maxLagMs to bound it)`);
    }
  }

  private retryAfterSeconds(): number {
    return Math.max(1, Math.ceil((this.options.replicaOptions.checkIntervalMs || RETRY_WITHOUT_CHECKS_MS) / 1000));
  }
}

interface CheckRow {
  recovery: boolean;
  replay_lsn: string | null;
  streaming: boolean;
  caught_up: boolean;
  replay_age_ms: string | number | null;
}

class DeadlineError extends Error {}

/** sequelize-pool's `TimeoutError` (acquire deadline passed), whose `name` is not set. */
function isPoolTimeout(error: unknown): boolean {
  const e = error as { name?: unknown; constructor?: { name?: unknown } } | undefined;
  return e?.name === 'TimeoutError' || e?.constructor?.name === 'TimeoutError';
}

function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      onTimeout();
      reject(new DeadlineError(`no reply within ${ms} ms`));
    }, ms);
  });
  promise.catch(() => undefined);
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

function destroyClient(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
  client.end().catch(() => undefined);
}

/** A connection error in one line: its message and SQLSTATE or errno, secrets redacted. */
function describe(error: unknown, secrets: readonly string[]): string {
  const e = error as { message?: unknown; parent?: { message?: unknown; code?: unknown }; original?: { code?: unknown } } | undefined;
  const message = String(e?.parent?.message ?? e?.message ?? error);
  const code = sqlState(error) ?? (typeof e?.parent?.code === 'string' ? e.parent.code : undefined);
  return redact(code && !message.includes(code) ? `${message} [${code}]` : message, secrets);
}

function lagText(ms: number): string {
  return Number.isFinite(ms) ? `${Math.round(ms)} ms` : 'an unknown time';
}

/** `a >= b` for two `pg_lsn` texts (`X/Y`). */
export function lsnAtLeast(a: string, b: string): boolean {
  return lsnValue(a) >= lsnValue(b);
}

function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi || '0'}`) << 32n) | BigInt(`0x${lo || '0'}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

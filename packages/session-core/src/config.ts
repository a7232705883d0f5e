import { Sequelize, type Options as SequelizeOptions } from 'sequelize';
import { ConfigError } from './errors.js';
import { redactUrl } from './redact.js';

/** A function that receives every SQL statement when `echo` is on. */
export type EchoFunction = (sql: string) => void;

/** A `Sequelize` class: `Sequelize` itself or a subclass of it, such as sequelize-typescript's. */
export type SequelizeClass<S extends Sequelize = Sequelize> = new (options: SequelizeOptions) => S;

/** Options of `createEngine`. */
export interface EngineOptions<S extends Sequelize = Sequelize> {
  pool?: {
    /** Most connections open at once (default 10). */
    max?: number;
    /** Connections kept open when idle (default 0). */
    min?: number;
    /** How long a session waits for a free connection before `PoolTimeoutError` (default 30000). */
    acquireTimeoutMs?: number;
    /** How long an idle connection stays open (default 10000). */
    idleTimeoutMs?: number;
    /**
     * A connection idle in the pool at least this long gets a `SELECT 1` (bounded by the connect
     * deadline) before it is handed out; a dead one is destroyed and another taken. Warm checkouts
     * cost no round trip. 0 turns it off (default 5000).
     */
    validateIdleMs?: number;
  };
  /** Deadline of opening a connection: TCP connect, TLS, startup and authentication (default 10000; 0: none). */
  connectTimeoutMs?: number;
  /** TCP keepalive: first probe after this much idle time on a connection (default 30000; 0: off). */
  keepAliveMs?: number;
  /**
   * Client-side deadline of each statement's reply, counted from when the statement is written to
   * the socket. Default: derived, the effective server `statement_timeout` (`statementTimeoutMs`, or
   * a session's `settings.statement_timeout` when it raises it) plus `replyTimeoutMarginMs`, so the
   * server always gives up first; none when no server timeout is known. A number applies where no
   * server timeout is known and is raised to the derived value where one is (behind PgBouncer,
   * where `statementTimeoutMs` cannot be used). 0 turns the deadline off.
   */
  replyTimeoutMs?: number;
  /** Added to the server `statement_timeout` to derive the reply deadline (default 1000). */
  replyTimeoutMarginMs?: number;
  /** Log every statement: `true` for `console.log`, or a function. Passwords never appear. */
  echo?: boolean | EchoFunction;
  /** Server-side `statement_timeout` of every connection. */
  statementTimeoutMs?: number;
  /** Server-side `idle_in_transaction_session_timeout` of every connection. */
  idleInTransactionTimeoutMs?: number;
  /** `application_name` shown in `pg_stat_activity`. */
  applicationName?: string;
  /**
   * Read replica URLs: read-only sessions use them (one pool per replica, each up to `pool.max`);
   * everything else, statements outside sessions included, uses the primary.
   */
  replicas?: readonly string[];
  /** Health checks, lag limit and fallback of `replicas` (see docs/production.md, "Read replicas"). */
  replicaOptions?: ReplicaOptions;
  /** Queries outside any session throw `NoActiveSessionError` instead of autocommitting. */
  strict?: boolean;
  /**
   * `'before-commit'`: a transaction whose statements may have left session-level state (the
   * text gate of rule 13) is checked with one query inside it before COMMIT; state found is
   * refused (cleaned up, rolled back, `SessionStateLeftError`, the request answers 500). For a
   * transaction pooler (PgBouncer `pool_mode = transaction`), where destroying the client
   * connection does not clean the server backend. Default `'off'`.
   */
  sessionStateCheck?: 'off' | 'before-commit';
  /**
   * The class `engine.sequelize` extends (default `Sequelize`): pass sequelize-typescript's
   * `Sequelize` to get `engine.sequelize.addModels(...)`, or your own subclass. The engine still
   * makes the instance (its pool, dialect module and logging); an existing instance cannot be adopted.
   */
  sequelizeClass?: SequelizeClass<S>;
  /** Extra Sequelize options, passed through (connection settings above win); those of `sequelizeClass` too (sequelize-typescript's `models`, `repositoryMode`). */
  sequelize?: PassThroughOptions<S>;
}

/** Options of `replicas`. */
export interface ReplicaOptions {
  /**
   * What a read-only session does when no replica can serve it (all down or lagging):
   * `'primary'` (default) reads from the primary; `'error'` throws `ReplicaUnavailableError`
   * (adapters answer 503 with `Retry-After`).
   */
  fallback?: 'primary' | 'error';
  /** Skip a replica whose replay lag is above this (ms; default: no limit). */
  maxLagMs?: number;
  /** How often each replica is checked on its own connection (default 1000; 0: no background checks). */
  checkIntervalMs?: number;
  /** Connect and reply deadline of a check: a replica that does not answer within it is marked down (default 2000). */
  checkTimeoutMs?: number;
  /** Told when a replica changes state (`up`, `down`, `lagging`) or stops/starts streaming from the primary; default: `process.emitWarning` for `down`, `lagging` and stopped streaming. */
  onStateChange?: (replica: { url: string; state: 'up' | 'down' | 'lagging'; streaming?: boolean; cause?: string; lagMs?: number }) => void;
}

/** The constructor options of `S` (sequelize-typescript declares its own `options`) minus what the engine sets. */
export type PassThroughOptions<S extends Sequelize = Sequelize> = Omit<
  S extends { options: infer O extends SequelizeOptions } ? O : SequelizeOptions,
  'dialect' | 'host' | 'port' | 'database' | 'username' | 'password' | 'pool' | 'replication'
>;

/** A parsed, validated PostgreSQL connection URL. */
export interface ParsedUrl {
  host: string;
  port: number;
  database: string;
  username: string;
  password: string | undefined;
  ssl: boolean;
  /** The URL with its password shown as `***`. */
  redacted: string;
}

export interface ResolvedEngineOptions {
  pool: { max: number; min: number; acquireTimeoutMs: number; idleTimeoutMs: number; validateIdleMs: number };
  connectTimeoutMs: number;
  keepAliveMs: number;
  replyTimeoutMs: number | undefined;
  replyTimeoutMarginMs: number;
  echo: EchoFunction | undefined;
  statementTimeoutMs: number | undefined;
  idleInTransactionTimeoutMs: number | undefined;
  applicationName: string | undefined;
  replicas: ParsedUrl[];
  replicaOptions: ResolvedReplicaOptions;
  strict: boolean;
  sessionStateCheck: 'off' | 'before-commit';
  sequelize: PassThroughOptions | undefined;
  sequelizeClass: typeof Sequelize;
}

export interface ResolvedReplicaOptions {
  fallback: 'primary' | 'error';
  maxLagMs: number | undefined;
  checkIntervalMs: number;
  checkTimeoutMs: number;
  onStateChange: ReplicaOptions['onStateChange'];
}

/** The transaction isolation levels PostgreSQL accepts. */
export const ISOLATION_LEVELS = ['READ UNCOMMITTED', 'READ COMMITTED', 'REPEATABLE READ', 'SERIALIZABLE'] as const;
export type IsolationLevel = (typeof ISOLATION_LEVELS)[number];

/** Parse a `postgres://` URL; any problem is a `ConfigError` whose message never shows the password. */
export function parseDatabaseUrl(url: unknown, field = 'url'): ParsedUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new ConfigError(field, 'a PostgreSQL URL is required (postgres://user:password@host:5432/database)');
  }
  const expected = 'expected postgres://user:password@host:5432/database';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    // never echo the input: without "//" a password is not recognisable as one
    throw new ConfigError(field, `is not a valid URL (${expected})`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    // without "://" the "scheme" is really the user name of a scheme-less URL: do not print it
    if (!url.includes('://')) throw new ConfigError(field, `has no scheme (${expected})`);
    const scheme = parsed.protocol.replace(/:$/, '');
    throw new ConfigError(field, `unsupported dialect "${scheme.slice(0, 20)}"; sessionlocal supports PostgreSQL (${expected})`);
  }
  const redacted = `${parsed.protocol}//${parsed.username ? `${parsed.username}${parsed.password ? ':***' : ''}@` : ''}${parsed.host}${parsed.pathname}`;
  if (!parsed.hostname) throw new ConfigError(field, `has no host: ${redacted}`);
  const port = parsed.port ? Number(parsed.port) : 5432;
  let database: string;
  let username: string;
  let password: string | undefined;
  try {
    database = decodeURIComponent(parsed.pathname.replace(/^\//, ''));
    username = decodeURIComponent(parsed.username || 'postgres');
    password = parsed.password ? decodeURIComponent(parsed.password) : undefined;
  } catch {
    throw new ConfigError(field, `has an invalid percent-escape in the user, password or database name: ${redacted}`);
  }
  if (!database) throw new ConfigError(field, `has no database name: ${redacted}`);
  const sslmode = parsed.searchParams.get('sslmode');
  const ssl = parsed.searchParams.get('ssl') === 'true' || (sslmode !== null && sslmode !== 'disable' && sslmode !== 'prefer' && sslmode !== 'allow');
  return {
    host: parsed.hostname.replace(/^\[|\]$/g, ''),
    port,
    database,
    username,
    password,
    ssl,
    redacted,
  };
}

function integer(field: string, value: unknown, min: number, fallback: number): number;
function integer(field: string, value: unknown, min: number, fallback?: undefined): number | undefined;
function integer(field: string, value: unknown, min: number, fallback?: number): number | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new ConfigError(field, `must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Validate and fill in defaults for `createEngine` options. */
export function resolveEngineOptions<S extends Sequelize>(options: EngineOptions<S> = {}): ResolvedEngineOptions {
  if (options === null || typeof options !== 'object') throw new ConfigError('options', 'must be an object');
  const pool = options.pool ?? {};
  const max = integer('pool.max', pool.max, 1, 10);
  const min = integer('pool.min', pool.min, 0, 0);
  if (min > max) throw new ConfigError('pool.min', `must not exceed pool.max (${max}), got ${min}`);
  const echo = options.echo;
  if (echo !== undefined && typeof echo !== 'boolean' && typeof echo !== 'function') {
    throw new ConfigError('echo', 'must be a boolean or a function');
  }
  if (options.applicationName !== undefined && (typeof options.applicationName !== 'string' || options.applicationName.length > 63)) {
    throw new ConfigError('applicationName', 'must be a string of at most 63 characters');
  }
  const replicas = options.replicas ?? [];
  if (!Array.isArray(replicas)) throw new ConfigError('replicas', 'must be an array of URLs');
  if ((options.sequelize as unknown) instanceof Sequelize) throw existingInstance('sequelize');
  return {
    pool: {
      max,
      min,
      acquireTimeoutMs: integer('pool.acquireTimeoutMs', pool.acquireTimeoutMs, 1, 30_000),
      idleTimeoutMs: integer('pool.idleTimeoutMs', pool.idleTimeoutMs, 1, 10_000),
      validateIdleMs: integer('pool.validateIdleMs', pool.validateIdleMs, 0, 5_000),
    },
    connectTimeoutMs: integer('connectTimeoutMs', options.connectTimeoutMs, 0, 10_000),
    keepAliveMs: integer('keepAliveMs', options.keepAliveMs, 0, 30_000),
    replyTimeoutMs: integer('replyTimeoutMs', options.replyTimeoutMs, 0),
    replyTimeoutMarginMs: integer('replyTimeoutMarginMs', options.replyTimeoutMarginMs, 0, 1_000),
    echo: echo === true ? (sql) => console.log(`[sessionlocal] ${sql}`) : echo || undefined,
    statementTimeoutMs: integer('statementTimeoutMs', options.statementTimeoutMs, 0),
    idleInTransactionTimeoutMs: integer('idleInTransactionTimeoutMs', options.idleInTransactionTimeoutMs, 0),
    applicationName: options.applicationName,
    replicas: replicas.map((url, i) => parseDatabaseUrl(url, `replicas[${i}]`)),
    replicaOptions: resolveReplicaOptions(options.replicaOptions),
    strict: options.strict ?? false,
    sessionStateCheck: oneOf('sessionStateCheck', options.sessionStateCheck, ['off', 'before-commit'] as const) ?? 'off',
    sequelize: options.sequelize as PassThroughOptions | undefined,
    sequelizeClass: checkSequelizeClass(options.sequelizeClass),
  };
}

function resolveReplicaOptions(options: ReplicaOptions | undefined): ResolvedReplicaOptions {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw new ConfigError('replicaOptions', 'must be an object');
  const o = options ?? {};
  if (o.fallback !== undefined && o.fallback !== 'primary' && o.fallback !== 'error') {
    throw new ConfigError('replicaOptions.fallback', `must be 'primary' or 'error', got ${JSON.stringify(o.fallback)}`);
  }
  if (o.onStateChange !== undefined && typeof o.onStateChange !== 'function') throw new ConfigError('replicaOptions.onStateChange', 'must be a function');
  return {
    fallback: o.fallback ?? 'primary',
    maxLagMs: integer('replicaOptions.maxLagMs', o.maxLagMs, 0),
    checkIntervalMs: integer('replicaOptions.checkIntervalMs', o.checkIntervalMs, 0, 1_000),
    checkTimeoutMs: integer('replicaOptions.checkTimeoutMs', o.checkTimeoutMs, 1, 2_000),
    onStateChange: o.onStateChange,
  };
}

/** Why an already-built instance is refused, and the one-line change that replaces it. */
function existingInstance(field: string): ConfigError {
  return new ConfigError(
    field,
    "is a Sequelize instance; an existing instance cannot be adopted (its query() reads the process-global Sequelize CLS namespace and its pool does not use the engine's pg client). " +
      'Let the engine make it: replace `new Sequelize(url, options)` with `createEngine(url, { sequelizeClass: Sequelize, sequelize: options }).sequelize`',
  );
}

function checkSequelizeClass(value: unknown): typeof Sequelize {
  if (value === undefined) return Sequelize;
  if (value instanceof Sequelize) throw existingInstance('sequelizeClass');
  if (typeof value === 'function' && (value === Sequelize || value.prototype instanceof Sequelize)) return value as typeof Sequelize;
  const looksLikeSequelize = typeof value === 'function' && typeof (value as { useCLS?: unknown }).useCLS === 'function' && typeof value.prototype?.query === 'function';
  if (looksLikeSequelize) {
    throw new ConfigError(
      'sequelizeClass',
      "extends a different copy of the 'sequelize' package than @sessionlocal/session-core loads; make both resolve to one sequelize (one version in the lockfile)",
    );
  }
  const got = typeof value === 'function' ? `class ${value.name || '(anonymous)'}` : value === null ? 'null' : typeof value;
  throw new ConfigError('sequelizeClass', `must be Sequelize or a subclass of it (e.g. sequelize-typescript's Sequelize), got ${got}`);
}

/**
 * The reply deadline of a session's statements (ms), or undefined for none: the effective server
 * `statement_timeout` (the engine's, or the session's `settings.statement_timeout` when it raises
 * it; '0' disables both) plus the margin, never below an explicit `replyTimeoutMs`.
 */
export function replyDeadlineMs(options: ResolvedEngineOptions, settings?: Record<string, string>): number | undefined {
  const explicit = options.replyTimeoutMs;
  if (explicit === 0) return undefined;
  let server = options.statementTimeoutMs || undefined;
  const local = settings?.statement_timeout;
  if (local !== undefined) {
    const ms = parseDurationMs(local);
    if (ms === 0) return undefined; // the session runs without a server timeout: no client deadline either
    if (ms !== undefined && (server === undefined || ms > server)) server = ms;
  }
  const derived = server === undefined ? undefined : server + options.replyTimeoutMarginMs;
  if (explicit === undefined) return derived;
  return derived === undefined ? explicit : Math.max(explicit, derived);
}

const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|min|h|d)?\s*$/;
const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 };

/** A PostgreSQL duration setting (`'5000'`, `'5s'`, `'1min'`) in milliseconds; undefined when unreadable. */
export function parseDurationMs(value: string): number | undefined {
  const match = DURATION.exec(value);
  if (!match) return undefined;
  return Math.ceil(Number(match[1]) * (UNIT_MS[match[2] ?? 'ms'] ?? 1));
}

/** Validate an isolation level (case-insensitive); `field` names the option in errors. */
export function checkIsolationLevel(value: unknown, field = 'isolationLevel'): IsolationLevel | undefined {
  if (value === undefined) return undefined;
  const upper = typeof value === 'string' ? value.toUpperCase().replace(/_/g, ' ') : value;
  if (!ISOLATION_LEVELS.includes(upper as IsolationLevel)) {
    throw new ConfigError(field, `unknown isolation level ${JSON.stringify(value)}; use one of ${ISOLATION_LEVELS.join(', ')}`);
  }
  return upper as IsolationLevel;
}

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

/** Validate transaction-local settings: names are identifiers (`app.tenant_id`), values strings. */
export function checkSettings(settings: unknown, field = 'settings'): Record<string, string> | undefined {
  if (settings === undefined || settings === null) return undefined;
  if (typeof settings !== 'object' || Array.isArray(settings)) throw new ConfigError(field, 'must be an object of name -> string value');
  const entries = Object.entries(settings as Record<string, unknown>);
  if (entries.length === 0) return undefined;
  for (const [name, value] of entries) {
    if (!SETTING_NAME.test(name) || name.length > 63) {
      throw new ConfigError(`${field}.${JSON.stringify(name)}`, 'is not a valid setting name (letters, digits, _ and one optional dot, e.g. "app.tenant_id")');
    }
    if (typeof value !== 'string') throw new ConfigError(`${field}.${name}`, `must be a string, got ${typeof value}`);
  }
  return settings as Record<string, string>;
}

/** Read engine configuration from environment variables. */
export function optionsFromEnv(env: NodeJS.ProcessEnv): { url: string; options: EngineOptions } {
  const url = env.DATABASE_URL;
  if (!url) throw new ConfigError('DATABASE_URL', 'is not set');
  const num = (name: string, min: number): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw === '') return undefined;
    if (!/^\d+$/.test(raw.trim()) || Number(raw) < min) throw new ConfigError(name, `must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
    return Number(raw);
  };
  const echoRaw = env.DB_ECHO?.toLowerCase();
  if (echoRaw !== undefined && !['', '0', '1', 'true', 'false', 'yes', 'no'].includes(echoRaw)) {
    throw new ConfigError('DB_ECHO', `must be true/false/1/0, got ${JSON.stringify(env.DB_ECHO)}`);
  }
  const pool: NonNullable<EngineOptions['pool']> = {};
  const max = num('DB_POOL_MAX', 1);
  const min = num('DB_POOL_MIN', 0);
  const acquire = num('DB_POOL_ACQUIRE_TIMEOUT_MS', 1);
  const idle = num('DB_POOL_IDLE_TIMEOUT_MS', 1);
  const validate = num('DB_POOL_VALIDATE_IDLE_MS', 0);
  if (validate !== undefined) pool.validateIdleMs = validate;
  if (max !== undefined) pool.max = max;
  if (min !== undefined) pool.min = min;
  if (acquire !== undefined) pool.acquireTimeoutMs = acquire;
  if (idle !== undefined) pool.idleTimeoutMs = idle;
  const options: EngineOptions = { pool, echo: echoRaw === '1' || echoRaw === 'true' || echoRaw === 'yes' };
  const statement = num('DB_STATEMENT_TIMEOUT_MS', 0);
  if (statement !== undefined) options.statementTimeoutMs = statement;
  const fields = [
    ['DB_CONNECT_TIMEOUT_MS', 'connectTimeoutMs'],
    ['DB_KEEPALIVE_MS', 'keepAliveMs'],
    ['DB_REPLY_TIMEOUT_MS', 'replyTimeoutMs'],
    ['DB_REPLY_TIMEOUT_MARGIN_MS', 'replyTimeoutMarginMs'],
  ] as const;
  for (const [name, field] of fields) {
    const value = num(name, 0);
    if (value !== undefined) options[field] = value;
  }
  const replicaList = env.DATABASE_REPLICA_URLS?.trim();
  if (replicaList) {
    const urls = replicaList.split(/[\s,]+/).filter(Boolean);
    for (const [i, u] of urls.entries()) parseDatabaseUrl(u, `DATABASE_REPLICA_URLS[${i}]`);
    options.replicas = urls;
  }
  const replicaOptions: ReplicaOptions = {};
  const maxLag = num('DB_REPLICA_MAX_LAG_MS', 0);
  const checkInterval = num('DB_REPLICA_CHECK_INTERVAL_MS', 0);
  const checkTimeout = num('DB_REPLICA_CHECK_TIMEOUT_MS', 1);
  if (maxLag !== undefined) replicaOptions.maxLagMs = maxLag;
  if (checkInterval !== undefined) replicaOptions.checkIntervalMs = checkInterval;
  if (checkTimeout !== undefined) replicaOptions.checkTimeoutMs = checkTimeout;
  const fallback = env.DB_REPLICA_FALLBACK;
  if (fallback !== undefined && fallback !== '') {
    if (fallback !== 'primary' && fallback !== 'error') throw new ConfigError('DB_REPLICA_FALLBACK', `must be 'primary' or 'error', got ${JSON.stringify(fallback)}`);
    replicaOptions.fallback = fallback;
  }
  if (Object.keys(replicaOptions).length > 0) options.replicaOptions = replicaOptions;
  const stateCheck = env.DB_SESSION_STATE_CHECK;
  if (stateCheck !== undefined && stateCheck !== '') options.sessionStateCheck = oneOf('DB_SESSION_STATE_CHECK', stateCheck, ['off', 'before-commit'] as const);
  return { url, options };
}

function oneOf<T extends string>(field: string, value: unknown, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(field, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${JSON.stringify(value)}`);
}

import { redactUrl } from './redact.js';

/** Stable machine-readable codes carried by every sessionlocal error. */
export type SessionLocalErrorCode =
  | 'CONFIG_INVALID'
  | 'NO_ACTIVE_SESSION'
  | 'SESSION_CLOSED'
  | 'POOL_TIMEOUT'
  | 'INSTANCE_EXPIRED'
  | 'ENGINE_DISPOSED'
  | 'COMMIT_FAILED'
  | 'TRANSACTION_ABORTED'
  | 'TRANSACTION_ENDED'
  | 'NESTED_TRANSACTION_REFUSED'
  | 'RAW_TRANSACTION_CONTROL'
  | 'REPLY_TIMEOUT'
  | 'COMMIT_OUTCOME_UNKNOWN'
  | 'REPLICA_UNAVAILABLE'
  | 'PARTIALLY_COMMITTED'
  | 'SESSION_STATE_LEFT';

/** Base class of every error thrown by sessionlocal; `code` is stable across releases. */
export class SessionLocalError extends Error {
  readonly code: SessionLocalErrorCode;

  constructor(code: SessionLocalErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message };
  }
}

/** Bad engine or factory configuration; `field` names the offending option or variable. */
export class ConfigError extends SessionLocalError {
  readonly field: string;

  constructor(field: string, problem: string) {
    // a problem may quote the value given, e.g. a URL pasted into the wrong variable: never its password
    super('CONFIG_INVALID', redactUrl(`${field}: ${problem}`));
    this.field = field;
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), field: this.field };
  }
}

/** No session in the current async context (or a query ran outside one on a `strict` engine). */
export class NoActiveSessionError extends SessionLocalError {
  constructor(message = 'No active session in this async context. Run the code inside SessionLocal.begin(fn), session.run(fn) or a request handled by a sessionlocal adapter.') {
    super('NO_ACTIVE_SESSION', message);
  }

  static strictQuery(sql: string): NoActiveSessionError {
    const head = sql.length > 80 ? `${sql.slice(0, 80)}...` : sql;
    return new NoActiveSessionError(`Query outside any session on a strict engine: ${head}. Run it inside SessionLocal.begin(fn), or use engine.autocommit(fn) for deliberate autocommit work.`);
  }
}

/** The session was closed; create a new one with `SessionLocal()`. */
export class SessionClosedError extends SessionLocalError {
  constructor(sessionId: number, ending = false) {
    super(
      'SESSION_CLOSED',
      ending
        ? `Session ${sessionId} is ending (its request is committing or rolling back): a statement issued now would not be part of it.`
        : `Session ${sessionId} is closed; create a new one with SessionLocal().`,
    );
  }
}

/** No pooled connection became free within `pool.acquireTimeoutMs`. Adapters answer 503. */
export class PoolTimeoutError extends SessionLocalError {
  readonly timeoutMs: number;
  /** Read by Express's finalhandler, Koa's `ctx.onerror` and Fastify's error handler. */
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
  readonly headers: Record<string, string> = { 'retry-after': '1' };

  /** The pool that had no free connection: `primary`, or a replica's URL (password shown as `***`). */
  readonly pool: string;

  constructor(timeoutMs: number, cause?: unknown, pool = 'primary') {
    super(
      'POOL_TIMEOUT',
      `No database connection became free within ${timeoutMs} ms (${pool === 'primary' ? 'pool' : `pool of replica ${pool}`} exhausted). Retry later, raise pool.max (per pool) or shorten transactions.`,
      { cause },
    );
    this.timeoutMs = timeoutMs;
    this.pool = pool;
  }
}

/** An attribute of an instance expired at commit (`expireOnCommit: true`) was read. */
export class InstanceExpiredError extends SessionLocalError {
  readonly model: string;
  readonly attribute: string;

  constructor(model: string, attribute: string) {
    super('INSTANCE_EXPIRED', `${model}.${attribute} was expired at commit (expireOnCommit: true); reload it with await session.refresh(instance).`);
    this.model = model;
    this.attribute = attribute;
  }
}

/** The engine was disposed; it opens no new sessions. */
export class EngineDisposedError extends SessionLocalError {
  constructor() {
    super('ENGINE_DISPOSED', 'The engine has been disposed and opens no new sessions.');
  }
}

/** COMMIT failed (e.g. a deferred constraint); the transaction was rolled back. */
export class CommitError extends SessionLocalError {
  readonly status = 500;
  readonly statusCode = 500;
  constructor(sessionId: number, cause: unknown) {
    super('COMMIT_FAILED', `COMMIT of session ${sessionId} failed, the transaction was rolled back: ${describe(cause)}`, { cause });
  }
}

/**
 * `sessionStateCheck: 'before-commit'`: the transaction left session-level state on its server
 * backend (`left` names it, e.g. `setting search_path`, `advisory lock`, `LISTEN jobs`). It was
 * cleaned up and rolled back instead of committed; the request answers 500.
 */
export class SessionStateLeftError extends SessionLocalError {
  readonly status = 500;
  readonly statusCode = 500;
  /** What was found, one entry per item. */
  readonly left: string[];
  constructor(sessionId: number, left: string[]) {
    super(
      'SESSION_STATE_LEFT',
      `session ${sessionId} left session-level state that would outlive its transaction (${left.join(', ')}); it was rolled back instead of committed. Use SET LOCAL / set_config(…, true) / pg_advisory_xact_lock, or keep such state out of request code.`,
    );
    this.left = left;
  }
}

/**
 * Several registrations (one per engine) on one request commit one after the other, in
 * registration order, without two-phase commit: a COMMIT failed after the registrations in
 * `committed` had committed (their work is saved; `failed`'s is not). Adapters answer 500
 * `partially_committed` naming both lists.
 */
export class PartialCommitError extends SessionLocalError {
  readonly status = 500;
  readonly statusCode = 500;
  /** The registrations (`name`s) whose work was committed. */
  readonly committed: string[];
  /** The registrations whose work was rolled back (the one whose COMMIT failed, and those after it). */
  readonly failed: string[];
  constructor(committed: string[], failed: string[], cause: unknown) {
    super('PARTIALLY_COMMITTED', `the COMMIT of ${failed.join(', ')} failed after ${committed.join(', ')} had committed: ${describe(cause)}`, { cause });
    this.committed = committed;
    this.failed = failed;
  }
}

/**
 * A statement's reply did not arrive within its reply deadline (engine `replyTimeoutMs`, by
 * default the effective server `statement_timeout` plus `replyTimeoutMarginMs`): the network went
 * silent or the server stopped answering. The connection was destroyed (never reused); the
 * session fails like any broken connection. Adapters answer 503 with `Retry-After`.
 */
export class ReplyTimeoutError extends SessionLocalError {
  readonly timeoutMs: number;
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
  readonly headers: Record<string, string> = { 'retry-after': '1' };

  constructor(timeoutMs: number, statement: string) {
    super('REPLY_TIMEOUT', `No reply from the database within ${timeoutMs} ms of sending ${head(statement)}; the connection was closed. Retry later; check the network or raise replyTimeoutMs.`);
    this.timeoutMs = timeoutMs;
  }
}

/**
 * COMMIT was sent but its reply never came (reply deadline, connection lost, or `engine.dispose`
 * could not wait): the server may or may not have committed. Never retried by
 * `begin({ retry })`; runs neither `afterCommit` nor `afterRollback` hooks (they are dropped).
 * Adapters answer 500 without `Retry-After`: a client must not blindly resend the request.
 */
export class CommitOutcomeUnknownError extends SessionLocalError {
  readonly status = 500;
  readonly statusCode = 500;
  /** How many `afterCommit` hooks were dropped without running. */
  droppedHooks = 0;

  constructor(sessionId: number | undefined, cause: unknown) {
    super(
      'COMMIT_OUTCOME_UNKNOWN',
      `COMMIT${sessionId === undefined ? '' : ` of session ${sessionId}`} was sent but its reply never came: the transaction may or may not have been committed (${describe(cause)}). Check before retrying.`,
      { cause },
    );
  }
}

/** Why one replica could not serve a read-only session. */
export interface ReplicaProblem {
  /** The replica's URL, password shown as `***`. */
  url: string;
  /** `down`: refused, reset or did not answer; `lagging`: further behind than `replicaOptions.maxLagMs`; `busy`: its pool had no free connection. */
  state: 'down' | 'lagging' | 'busy';
  /** What was seen: the connection error, the missed deadline, or the lag. */
  cause: string;
}

/**
 * No read replica could serve a read-only session and `replicaOptions.fallback` is `'error'`, or
 * the replica a session was reading from was marked down under it (its connection was closed).
 * Names each replica and its cause. Adapters answer 503 with `Retry-After`.
 */
export class ReplicaUnavailableError extends SessionLocalError {
  readonly status = 503;
  readonly statusCode = 503;
  readonly expose = true;
  readonly headers: Record<string, string>;
  readonly replicas: readonly ReplicaProblem[];
  readonly retryAfterSeconds: number;

  constructor(replicas: readonly ReplicaProblem[], retryAfterSeconds = 1, cause?: unknown) {
    const list = replicas.map((r) => `${r.url}: ${r.state}, ${r.cause}`).join('; ');
    super('REPLICA_UNAVAILABLE', `No read replica can serve this read-only session (${list || 'no replica configured'}). Retry later, or set replicaOptions.fallback to 'primary'.`, { cause });
    this.replicas = replicas;
    this.retryAfterSeconds = retryAfterSeconds;
    this.headers = { 'retry-after': String(retryAfterSeconds) };
  }

  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), replicas: this.replicas };
  }
}

/** A statement failed earlier in the transaction; nothing runs until rollback. */
export class TransactionAbortedError extends SessionLocalError {
  constructor(sessionId: number, firstFailure: unknown) {
    super('TRANSACTION_ABORTED', `Session ${sessionId}: the transaction is aborted because an earlier statement failed (${describe(firstFailure)}); roll back before running more statements.`, {
      cause: firstFailure,
    });
  }
}

/** A Sequelize `Transaction` of a session was used after that transaction ended (committed, rolled back or closed). */
export class TransactionEndedError extends SessionLocalError {
  constructor(sessionId: number, finished: string | undefined) {
    super(
      'TRANSACTION_ENDED',
      `A transaction of session ${sessionId} was used after it ended (${finished ?? 'closed'}); a statement with it would run in another transaction. Pass no transaction option (the statement joins the current session) or use session.transaction().`,
    );
  }
}

/** Raw transaction control (`COMMIT`, `ROLLBACK`, `BEGIN`, …) sent as a statement of a session: refused before it is sent. */
export class RawTransactionControlError extends SessionLocalError {
  readonly statement: string;

  constructor(sessionId: number, statement: string, reason?: string) {
    super(
      'RAW_TRANSACTION_CONTROL',
      reason
        ? `A ${statement} statement was sent inside session ${sessionId}: ${reason}.`
        : `A ${statement} statement was sent inside session ${sessionId}: it would end or nest the session's transaction behind its back, and the statements after it would autocommit. Use session.commit() / session.rollback(), sequelize.transaction(cb) for a savepoint, or run it outside the session ({ transaction: null }).`,
    );
    this.statement = statement;
  }
}

/** A nested `sequelize.transaction()` inside a session asked for something a SAVEPOINT cannot give. */
export class NestedTransactionError extends SessionLocalError {
  private constructor(message: string) {
    super('NESTED_TRANSACTION_REFUSED', message);
  }

  /** A second nested unit started while a sibling unit of the same session is still open. */
  static concurrent(sessionId: number): NestedTransactionError {
    return new NestedTransactionError(
      `Session ${sessionId} already has a nested transaction (SAVEPOINT) open in another branch of this request: concurrent nested transactions on one connection would interleave their savepoints. Run them one after another (a for…of loop instead of Promise.all), or give each its own session with SessionLocal.begin().`,
    );
  }

  /** An option (isolation level, read-only) that a savepoint of the session cannot honour. */
  static option(sessionId: number, option: string, asked: unknown, session: unknown): NestedTransactionError {
    return new NestedTransactionError(
      `sequelize.transaction({ ${option}: ${JSON.stringify(asked)} }) inside session ${sessionId}: a nested transaction is a SAVEPOINT of the session's transaction (${option}: ${JSON.stringify(session ?? 'server default')}) and cannot change ${option}. Open a separate session instead: SessionLocal.begin(fn, { ${option}: ... }).`,
    );
  }
}

/** The statement's first keyword only: SQL text can carry user data. */
function head(sql: string): string {
  const keyword = /^\s*([A-Za-z]+)/.exec(sql)?.[1];
  return keyword ? `a ${keyword.toUpperCase()} statement` : 'a statement';
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = sqlState(error);
    return code ? `${error.message} [SQLSTATE ${code}]` : error.message;
  }
  return String(error);
}

/** The PostgreSQL SQLSTATE of an error, looking through Sequelize wrappers and `cause`. */
export function sqlState(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current && typeof current === 'object'; depth++) {
    const e = current as { code?: unknown; parent?: unknown; original?: unknown; cause?: unknown };
    if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return e.code;
    current = e.parent ?? e.original ?? e.cause;
  }
  return undefined;
}

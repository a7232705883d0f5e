import { Transaction, type Model } from 'sequelize';
import type { Engine, PooledConnection } from './engine.js';
import { CommitError, CommitOutcomeUnknownError, SessionClosedError, TransactionAbortedError, type SessionLocalError } from './errors.js';
import { expire, unexpire } from './expire.js';
import type { ResolvedSessionOptions, SessionFactory } from './sessionmaker.js';
import { lostUnanswered, SessionClient } from './pipelined-begin.js';
import { handOver, serial } from './serial.js';

/** `idle`: no transaction; `active`: in a transaction; `failed`: a statement failed, roll back; `closed`. */
export type SessionState = 'idle' | 'active' | 'failed' | 'closed';

type Hook = () => unknown;

const OWNER = Symbol('sessionlocal.session');
let nextId = 1;

/** The session that owns a transaction (or the root of a savepoint), if any. */
export function ownerOf(transaction: Transaction): Session | undefined {
  let t = transaction as Transaction & { parent?: Transaction; [OWNER]?: Session };
  while (t.parent) t = t.parent as typeof t;
  return t[OWNER];
}

const ROLLBACK_TO = /^\s*ROLLBACK\s+TO\s/i;
const SESSION_STATE = /^\s*(RESET\b|SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|LISTEN\b|PREPARE\b|DECLARE\b.*\bWITH\s+HOLD\b|CREATE\s+(TEMP|TEMPORARY)\b)/i;

/**
 * A unit of work on one pooled connection. Lazy: nothing touches the pool until the first
 * statement (or `begin()`/`transaction()`), which acquires a connection and issues BEGIN.
 */
export class Session {
  readonly id: number;
  /** The factory that made this session. */
  readonly factory: SessionFactory;
  /** @internal */ readonly options: ResolvedSessionOptions;
  protected readonly engine: Engine;
  private _state: SessionState = 'idle';
  private tx: Transaction | undefined;
  private connection: PooledConnection | undefined;
  private beginning: Promise<Transaction> | undefined;
  /** BEGIN not sent yet: it rides on the session's first statement (see runStatement). */
  private pendingBegin: string | undefined;
  private failure: unknown;
  private dirty = false;
  private commitHooks: Hook[] | undefined;
  private rollbackHooks: Hook[] | undefined;
  private expiring: Set<Model> | undefined;
  private controller: AbortController | undefined;
  private acquiredAt = 0;
  private leakTimer: NodeJS.Timeout | undefined;
  private readonly openedStack: string | undefined;
  private closing: Promise<void> | undefined;
  /** Ending (a request scope is committing or rolling back): new statements are refused. */
  private sealed = false;

  constructor(engine: Engine, factory: SessionFactory, options: ResolvedSessionOptions) {
    this.id = nextId++;
    this.engine = engine;
    this.factory = factory;
    this.options = options;
    if (options.leakWarningMs !== undefined) this.openedStack = new Error('session opened here').stack;
  }

  get state(): SessionState {
    return this._state;
  }

  /** True while a transaction is open on the session's connection. */
  get inTransaction(): boolean {
    return this.tx !== undefined;
  }

  /** Aborted when the request that owns the session is aborted, or when the session closes. */
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    if (this._state === 'closed' && !this.controller.signal.aborted) this.controller.abort(new SessionClosedError(this.id));
    return this.controller.signal;
  }

  /** @internal Whether `signal` was aborted, without creating the signal (hot path of every request). */
  get abortRequested(): boolean {
    return this.controller?.signal.aborted === true;
  }

  /**
   * @internal Close at once, without a promise, when the session holds nothing: no transaction,
   * none beginning, no hooks waiting. Equivalent to commit-or-rollback then `close()` (both are
   * no-ops then). Returns false, doing nothing, otherwise. Lazy sessions that never queried end here.
   */
  closeIfUntouched(): boolean {
    if (this._state !== 'idle' || this.tx || this.beginning || this.closing || this.commitHooks || this.rollbackHooks) return false;
    this._state = 'closed';
    this.closing = Promise.resolve();
    this.controller?.abort(new SessionClosedError(this.id));
    this.emit('close', { sessionId: this.id });
    return true;
  }

  /** @internal The connection held by the open transaction, if any. */
  get heldConnection(): PooledConnection | undefined {
    return this.connection;
  }

  /** @internal The open transaction, without beginning one. */
  get currentTransaction(): Transaction | undefined {
    return this.tx;
  }

  /** Run `fn` with this session as the current one: queries without `transaction` join it. */
  run<T>(fn: () => T): T {
    this.assertOpen();
    return this.engine.scope.run({ session: this, transaction: undefined, autocommit: false }, fn);
  }

  /** Begin the transaction now (normally the first query does it). */
  async begin(): Promise<void> {
    await this.transaction();
  }

  /** The session's Sequelize transaction, beginning it if needed. */
  async transaction(): Promise<Transaction> {
    const tx = await this.transactionForStatement();
    if (this.pendingBegin !== undefined) await this.flushBegin(this.connection as PooledConnection);
    return tx;
  }

  /**
   * @internal The transaction a statement is about to join. When the session begins here, BEGIN
   * is not sent on its own: it is prefixed to the first statement (one round trip saved).
   */
  transactionForStatement(): Promise<Transaction> {
    if (this._state === 'closed' || this.sealed) return Promise.reject(new SessionClosedError(this.id, this._state !== 'closed'));
    if (this.tx) return Promise.resolve(this.tx);
    this.beginning ??= this.open().finally(() => {
      this.beginning = undefined;
    });
    return this.beginning;
  }

  /** Commit the open transaction (no-op if none), run `afterCommit` hooks, release the connection. */
  async commit(): Promise<void> {
    this.assertOpen();
    if (this.beginning) await this.beginning.catch(() => undefined);
    const tx = this.tx;
    const connection = this.connection;
    if (!tx || !connection) {
      await this.runHooks('commit', this.takeHooks().commit);
      return;
    }
    const started = performance.now();
    const firstFailure = this.failure;
    let broken = false;
    try {
      if (firstFailure !== undefined) throw new TransactionAbortedError(this.id, firstFailure);
      await serial(connection, () => (this.pendingBegin === undefined ? this.sendCommit(connection, tx) : this.skipBegin()));
    } catch (error) {
      if (error instanceof CommitOutcomeUnknownError) throw this.commitOutcomeUnknown(tx, error);
      broken = firstFailure === undefined && isConnectionError(error);
      if (firstFailure !== undefined) {
        await serial(connection, () => this.sendRollback(connection, tx)).catch(() => {
          broken = true;
        });
      }
      this.finish(tx, 'rollback', broken);
      const commitError = new CommitError(this.id, firstFailure ?? error);
      this.emit('rollback', { sessionId: this.id, durationMs: performance.now() - started, reason: commitError });
      await this.runHooks('rollback', this.takeHooks().rollback);
      throw commitError;
    }
    this.finish(tx, 'commit', false);
    this.engine.counters.committed++;
    const expiring = this.expiring;
    this.expiring = undefined;
    if (expiring) for (const instance of expiring) expire(instance);
    this.emit('commit', { sessionId: this.id, durationMs: performance.now() - started });
    const sequelizeHooks = (tx as unknown as { _afterCommitHooks: Array<(t: Transaction) => unknown> })._afterCommitHooks;
    const hooks = this.takeHooks().commit;
    for (const hook of sequelizeHooks) hooks.push(() => hook(tx));
    await this.runHooks('commit', hooks);
  }

  /** Roll back the open transaction (no-op if none), run `afterRollback` hooks, release the connection. */
  async rollback(): Promise<void> {
    this.assertOpen();
    await this.rollbackNow();
  }

  /** Roll back anything open and release the connection. Idempotent; later use throws `SessionClosedError`. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  /** Run `fn` in a SAVEPOINT: on throw, roll back to it and rethrow (the outer transaction survives). */
  async beginNested<T>(fn: (session: this) => Promise<T> | T): Promise<T> {
    const parent = await this.transaction();
    return this.engine.sequelize.transaction({ transaction: parent }, async () => fn(this)) as Promise<T>;
  }

  /** Run `fn` after the next successful COMMIT. Its errors are reported through the `error` event. */
  afterCommit(fn: Hook): void {
    this.assertOpen();
    (this.commitHooks ??= []).push(fn);
  }

  /** Run `fn` after the next ROLLBACK (including a failed COMMIT). */
  afterRollback(fn: Hook): void {
    this.assertOpen();
    (this.rollbackHooks ??= []).push(fn);
  }

  /** Reload an instance (expired or not) inside this session. */
  async refresh<M extends Model>(instance: M): Promise<M> {
    unexpire(instance);
    return instance.reload({ transaction: await this.transaction() });
  }

  /**
   * @internal The owner is ending the session (commit or rollback, then close): statements that
   * arrive from now on throw `SessionClosedError` instead of racing COMMIT or opening a new
   * transaction that close() would silently roll back. Statements already queued still run first.
   */
  seal(): void {
    this.sealed = true;
  }

  /** @internal Abort the session's signal (client disconnected); the owner closes it when the handler settles. */
  abort(reason?: unknown): void {
    this.controller ??= new AbortController();
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** @internal Track an instance for expiry at commit. */
  track(instance: Model): void {
    if (this.options.expireOnCommit) (this.expiring ??= new Set()).add(instance);
  }

  /**
   * @internal Run one statement of this session: in order, never after a failure, recording
   * failures. `task` receives the SQL to send: a pending BEGIN rides on a plain SELECT without
   * bind parameters as one simple-protocol message (`BEGIN …; SELECT …`), which PostgreSQL runs
   * all-or-nothing: if BEGIN fails, the SELECT is not run.
   */
  runStatement<T>(sql: unknown, options: { type?: unknown; bind?: unknown } | undefined, task: (sql: unknown) => Promise<T>): Promise<T> {
    if (this.sealed) return Promise.reject(new SessionClosedError(this.id, this._state !== 'closed'));
    const connection = this.connection;
    if (!connection) return task(sql);
    return serial(connection, async () => {
      const text = typeof sql === 'string' ? sql : '';
      const recovering = this.failure !== undefined && ROLLBACK_TO.test(text);
      if (this.failure !== undefined && !recovering) throw new TransactionAbortedError(this.id, this.failure);
      let send = sql;
      const pending = this.pendingBegin;
      if (pending !== undefined) {
        this.pendingBegin = undefined;
        if (text && options?.type === 'SELECT' && options.bind === undefined) {
          send = `${pending}; ${text}`;
        } else if (connection instanceof SessionClient) {
          // sent with the statement as one pipeline (one Sync) when it has parameters, else first
          this.engine.log(pending);
          connection.beginWithNext = pending;
        } else {
          this.engine.log(pending);
          await connection.query(pending);
        }
      }
      try {
        let result: T;
        try {
          result = await task(send);
        } catch (error) {
          // A stale pooled connection: the session's first statement (it carries BEGIN) got no
          // reply before the connection died, so nothing of the transaction can commit. Once more,
          // on a fresh connection.
          if (pending === undefined || !lostUnanswered(connection)) throw error;
          const fresh = await this.reconnect(connection, error);
          if (send === sql) fresh.beginWithNext = pending;
          result = await task(send);
        } finally {
          // not consumed (nothing reached the connection): BEGIN is still to be sent
          const current = this.connection ?? connection;
          if (current.beginWithNext !== undefined) {
            current.beginWithNext = undefined;
            this.pendingBegin = pending;
          }
        }
        if (recovering) {
          this.failure = undefined;
          this._state = 'active';
        } else if (!this.dirty && SESSION_STATE.test(text)) {
          this.dirty = true;
        }
        return result;
      } catch (error) {
        if (this.tx && this.failure === undefined && !recovering) {
          this.failure = error;
          this._state = 'failed';
        }
        throw error;
      }
    });
  }

  /** @internal Close immediately by destroying the connection (the server rolls back). Used by dispose. */
  async terminate(): Promise<void> {
    const tx = this.tx;
    if (tx) {
      this.finish(tx, 'rollback', true);
      this.engine.counters.rolledBack++;
    }
    await this.close();
  }

  // -- overridable transport (transactionalFactory replaces these with savepoints) --

  /**
   * @internal Acquire a connection and begin. Returns the BEGIN statement when it was left for
   * the first statement to carry (no settings to apply), else undefined once BEGIN has run.
   */
  protected async acquireAndBegin(): Promise<{ connection: PooledConnection; pendingBegin?: string }> {
    const { readOnly, isolationLevel, settings } = this.options;
    let begin = 'BEGIN';
    if (isolationLevel) begin += ` ISOLATION LEVEL ${isolationLevel}`;
    if (readOnly) begin += ' READ ONLY';
    if (!settings) return { connection: await this.engine.acquire(readOnly, this), pendingBegin: begin };
    for (let attempt = 1; ; attempt++) {
      const connection = await this.engine.acquire(readOnly, this);
      try {
        this.engine.log(begin);
        await connection.query(begin);
        await applySettings(this.engine, connection, settings);
        return { connection };
      } catch (error) {
        this.engine.release(connection, true);
        // a stale pooled connection died before answering: nothing began, take a fresh one (once)
        if (attempt > 1 || !lostUnanswered(connection)) throw error;
      }
    }
  }

  /** @internal */
  protected async sendCommit(connection: PooledConnection, _tx: Transaction): Promise<void> {
    this.engine.log('COMMIT');
    await connection.query('COMMIT');
  }

  /** @internal */
  protected async sendRollback(connection: PooledConnection, _tx: Transaction): Promise<void> {
    this.engine.log('ROLLBACK');
    await connection.query('ROLLBACK');
  }

  /** @internal */
  protected releaseConnection(connection: PooledConnection, destroy: boolean): void {
    this.engine.release(connection, destroy);
  }

  // -- internals --

  private async flushBegin(connection: PooledConnection): Promise<void> {
    await serial(connection, async () => {
      const pending = this.pendingBegin;
      if (pending === undefined) return;
      this.pendingBegin = undefined;
      this.engine.log(pending);
      await connection.query(pending);
    });
  }

  /** Move the session to a fresh connection (the old one is destroyed); `cause` is thrown when none can be had. */
  private async reconnect(old: PooledConnection, cause: unknown): Promise<PooledConnection> {
    let fresh: PooledConnection;
    try {
      fresh = await this.engine.acquire(this.options.readOnly, this);
    } catch {
      throw cause;
    }
    this.releaseConnection(old, true);
    const tx = this.tx as Transaction & { connection: PooledConnection; id: string };
    tx.connection = fresh;
    fresh.uuid = tx.id;
    this.connection = fresh;
    handOver(old, fresh);
    return fresh;
  }

  /** Nothing was sent on the connection: there is no transaction to end. */
  private async skipBegin(): Promise<void> {
    this.pendingBegin = undefined;
  }

  private assertOpen(): void {
    if (this._state === 'closed') throw new SessionClosedError(this.id);
  }

  private async open(): Promise<Transaction> {
    const started = performance.now();
    const { connection, pendingBegin } = await this.acquireAndBegin();
    this.pendingBegin = pendingBegin;
    if (this._state === 'closed') {
      this.releaseConnection(connection, true);
      throw new SessionClosedError(this.id);
    }
    const tx = new Transaction(this.engine.sequelize, { isolationLevel: this.options.isolationLevel as Transaction.ISOLATION_LEVELS | undefined, readOnly: this.options.readOnly });
    const internal = tx as Transaction & { connection: PooledConnection; [OWNER]?: Session };
    internal.connection = connection;
    internal[OWNER] = this;
    connection.uuid = (tx as unknown as { id: string }).id;
    this.tx = tx;
    this.connection = connection;
    this._state = 'active';
    this.acquiredAt = performance.now();
    this.engine.holding.add(this);
    this.engine.counters.opened++;
    if (this.options.leakWarningMs !== undefined) {
      this.leakTimer = setTimeout(() => {
        this.emit('leak', { sessionId: this.id, heldMs: performance.now() - this.acquiredAt, stack: this.openedStack });
      }, this.options.leakWarningMs);
      this.leakTimer.unref();
    }
    this.emit('begin', { sessionId: this.id, durationMs: this.acquiredAt - started });
    return tx;
  }

  private async rollbackNow(): Promise<void> {
    if (this.beginning) await this.beginning.catch(() => undefined);
    const tx = this.tx;
    const connection = this.connection;
    const hooks = this.takeHooks().rollback;
    if (tx && connection) {
      const started = performance.now();
      let broken = isBroken(connection);
      if (!broken) {
        await serial(connection, () => (this.pendingBegin === undefined ? this.sendRollback(connection, tx) : this.skipBegin())).catch(() => {
          broken = true;
        });
      }
      this.finish(tx, 'rollback', broken);
      this.engine.counters.rolledBack++;
      this.emit('rollback', { sessionId: this.id, durationMs: performance.now() - started });
    }
    await this.runHooks('rollback', hooks);
  }

  private async closeNow(): Promise<void> {
    if (this._state !== 'closed') {
      try {
        await this.rollbackNow();
      } finally {
        this._state = 'closed';
        this.controller?.abort(new SessionClosedError(this.id));
        this.emit('close', { sessionId: this.id });
      }
    }
  }

  /** End the transaction object and give the connection back (or destroy it if it may carry state). */
  private finish(tx: Transaction, outcome: 'commit' | 'rollback', broken: boolean): void {
    const connection = this.connection;
    (tx as unknown as { finished: string }).finished = outcome;
    this.tx = undefined;
    this.connection = undefined;
    this.failure = undefined;
    this.pendingBegin = undefined;
    if (this._state !== 'closed') this._state = 'idle';
    if (this.leakTimer) clearTimeout(this.leakTimer);
    this.leakTimer = undefined;
    if (outcome === 'rollback') this.expiring = undefined;
    if (connection) {
      this.releaseConnection(connection, broken || this.dirty);
      this.dirty = false;
      this.engine.sessionReleased(this);
    }
  }

  /**
   * COMMIT was sent and its reply never came: the connection is destroyed, neither `afterCommit`
   * nor `afterRollback` hooks run (they are dropped and counted), neither `committed` nor
   * `rolledBack` is counted; the factory emits `error` with phase `commit`.
   */
  private commitOutcomeUnknown(tx: Transaction, error: CommitOutcomeUnknownError): CommitOutcomeUnknownError {
    const sequelizeHooks = (tx as unknown as { _afterCommitHooks: unknown[] })._afterCommitHooks.length;
    this.finish(tx, 'rollback', true);
    const unknown = new CommitOutcomeUnknownError(this.id, error.cause);
    unknown.droppedHooks = this.takeHooks().commit.length + sequelizeHooks;
    this.emit('error', { sessionId: this.id, error: unknown, phase: 'commit' });
    return unknown;
  }

  private takeHooks(): { commit: Hook[]; rollback: Hook[] } {
    const hooks = { commit: this.commitHooks ?? [], rollback: this.rollbackHooks ?? [] };
    this.commitHooks = undefined;
    this.rollbackHooks = undefined;
    return hooks;
  }

  private async runHooks(kind: 'commit' | 'rollback', hooks: Hook[]): Promise<void> {
    for (const hook of hooks) {
      try {
        // outside the session: a hook's queries run in autocommit (or throw on a strict engine),
        // never in a transaction of this session that close() would roll back
        await this.engine.scope.run({ session: undefined, transaction: undefined, autocommit: false }, hook);
      } catch (error) {
        this.emit('error', { sessionId: this.id, error, phase: kind === 'commit' ? 'afterCommit' : 'afterRollback' });
      }
    }
  }

  private emit(event: string, payload: object): void {
    (this.factory as unknown as { emitEvent(e: string, p: object): void }).emitEvent(event, payload);
  }
}

/** @internal Apply transaction-local settings with bound parameters. */
export async function applySettings(engine: Engine, connection: PooledConnection, settings: Record<string, string>): Promise<void> {
  const names = Object.keys(settings);
  const calls = names.map((_, i) => `set_config($${2 * i + 1}, $${2 * i + 2}, true)`).join(', ');
  const values = names.flatMap((name) => [name, settings[name]]);
  engine.log(`SELECT ${calls} -- ${names.join(', ')}`);
  await connection.query({ text: `SELECT ${calls}`, values });
}

function isBroken(connection: PooledConnection): boolean {
  return Boolean(connection._invalid || connection._ending);
}

function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: string } | undefined)?.code;
  if (typeof code === 'string' && /^(08|57P)/.test(code)) return true;
  const message = error instanceof Error ? error.message : '';
  return /Connection terminated|not queryable|ECONNRESET|EPIPE/i.test(message);
}

export type { SessionLocalError };

import { Transaction, type Model } from 'sequelize';
import type { Engine, PooledConnection } from './engine.js';
import { sqlState } from './errors.js';
import {
  CommitError,
  CommitOutcomeUnknownError,
  NestedTransactionError,
  RawTransactionControlError,
  ReplicaUnavailableError,
  SessionClosedError,
  SessionStateLeftError,
  TransactionAbortedError,
  TransactionEndedError,
  SessionLocalError,
} from './errors.js';
import { expire, unexpire } from './expire.js';
import { ownerOf, setOwner } from './owner.js';
import { lostUnanswered, sendBegin, sendWithBegin, settledStatus, transactionStatus } from './pipelined-begin.js';
import type { ResolvedSessionOptions, SessionFactory } from './sessionmaker.js';
import { handOver, serial } from './serial.js';
import { mayLeaveSessionState, readWriteSwitchIn, transactionControlIn } from './session-state.js';
import { describeBegin, type PendingBegin, poolTransport, type SessionTransport } from './transport.js';
import { mayWrite } from './read-your-writes.js';
import { sessionStateLeft } from './state-check.js';
import { addUnitHook, releaseUnitHooks, takeUnitHooks, unitInScope } from './unit-hooks.js';

/** `idle`: no transaction; `active`: in a transaction; `failed`: a statement failed, roll back; `closed`. */
export type SessionState = 'idle' | 'active' | 'failed' | 'closed';

type Hook = () => unknown;

/** What a session holds while it has a connection (states `active`, `failed`, `ending`). */
interface Held {
  /** Replaced only when a stale connection failed the first statement before any reply (`reconnect`). */
  connection: PooledConnection;
  readonly acquiredAt: number;
  readonly leakTimer: NodeJS.Timeout | undefined;
  /** BEGIN (and settings) not sent yet: it rides with the first statement (`sendWithBegin`), or with the first impure one under `deferredReads`. */
  pendingBegin: PendingBegin | undefined;
  /** A statement may have left session-level state on the connection: destroy it at release. */
  dirty: boolean;
  /** The last statement error that left the server's transaction aborted. */
  failure: unknown;
}

/**
 * The lifecycle, one state at a time (see docs/semantics.md, "Session states"):
 *
 * | from       | to         | when                                        | side effects (in `move`)                          |
 * |------------|------------|---------------------------------------------|---------------------------------------------------|
 * | idle       | acquiring  | first statement, `begin()`, `transaction()` |                                                   |
 * | acquiring  | active     | connection acquired                         | `opened`++, holding += session, leak timer, `begin` |
 * | acquiring  | idle       | acquire failed                              |                                                   |
 * | active     | failed     | a statement aborted the transaction (`E`)   |                                                   |
 * | failed     | active     | ROLLBACK TO SAVEPOINT recovered it          |                                                   |
 * | active, failed | ending | `commit()`, `rollback()`, `close()`, dispose |                                                   |
 * | ending     | idle       | COMMIT/ROLLBACK done (or failed)            | release/destroy, holding -= session, leak timer off, `committed`/`rolledBack`++, `commit`/`rollback` |
 * | idle       | closed     | `close()` (after ending what was open)      | signal aborted, `close`                           |
 */
type Lifecycle =
  | { readonly kind: 'idle' }
  | { readonly kind: 'acquiring'; readonly ready: Promise<Held> }
  | { readonly kind: 'active'; readonly held: Held }
  | { readonly kind: 'failed'; readonly held: Held; readonly failure: unknown }
  | { readonly kind: 'ending'; readonly held: Held }
  | { readonly kind: 'closed' };

type Kind = Lifecycle['kind'];

const LEGAL: Record<Kind, readonly Kind[]> = {
  idle: ['acquiring', 'closed'],
  acquiring: ['active', 'idle'],
  active: ['failed', 'ending'],
  failed: ['active', 'ending'],
  ending: ['idle'],
  closed: [],
};

/** How a transaction ended, for the counters and events of `ending -> idle`. */
interface Ended {
  /** `unknown`: COMMIT was sent and its reply never came (counted as neither). */
  outcome: 'commit' | 'rollback' | 'unknown';
  startedAt: number;
  destroy: boolean;
  reason?: unknown;
}

let nextId = 1;

const ROLLBACK_TO = /^\s*ROLLBACK\s+TO\s/i;

/**
 * A unit of work on one pooled connection. Lazy: nothing touches the pool until the first
 * statement (or `begin()`/`transaction()`), which acquires a connection and issues BEGIN.
 */
export class Session {
  readonly id: number;
  /** The factory that made this session. */
  readonly factory: SessionFactory;
  /** The session's options, resolved (factory defaults merged with the per-session overrides). */
  readonly options: ResolvedSessionOptions;
  /** @internal */ readonly engine: Engine;
  private readonly transport: SessionTransport;
  private life: Lifecycle = { kind: 'idle' };
  /** The Sequelize transaction statements join: exists from first use (no I/O), ends with the transaction. */
  private tx: Transaction | undefined;
  /** Nested units (SAVEPOINTs) open right now, innermost last. */
  private units: Transaction[] = [];
  private commitHooks: Hook[] | undefined;
  private rollbackHooks: Hook[] | undefined;
  private expiring: Set<Model> | undefined;
  private controller: AbortController | undefined;
  private readonly openedStack: string | undefined;
  private closing: Promise<void> | undefined;
  /** The owner is ending the session (a request scope commits or rolls back): new statements are refused. */
  private sealed = false;
  /** @internal Transactions begun and savepoints made over the session's life (reported with `close`). */
  readonly counts = { transactions: 0, savepoints: 0 };
  /** @internal Closed by its engine (dispose), not by its owner: a request answering afterwards must not claim success. */
  terminated = false;
  /** A COMMIT or ROLLBACK in flight (state `ending`): close() waits for it. */
  private settling: Promise<unknown> | undefined;
  /** @internal A statement that may write ran in the current transaction (read-your-writes). */
  wrote = false;
  /**
   * The WAL position of the session's last COMMIT, when read-your-writes is on (`readYourWrites`)
   * and the transaction wrote: pass it as `minLsn` to a later read-only session (the adapters
   * carry it across requests in a cookie or header).
   */
  commitLsn: string | undefined;

  constructor(engine: Engine, factory: SessionFactory, options: ResolvedSessionOptions, transport: SessionTransport = poolTransport) {
    this.id = nextId++;
    this.engine = engine;
    this.factory = factory;
    this.options = options;
    this.transport = transport;
    if (options.leakWarningMs !== undefined) this.openedStack = new Error('session opened here').stack;
  }

  get state(): SessionState {
    switch (this.life.kind) {
      case 'active':
        return this.deferring ? 'idle' : 'active';
      case 'ending':
        return 'active';
      case 'failed':
        return 'failed';
      case 'closed':
        return 'closed';
      default:
        return 'idle';
    }
  }

  /** True while a transaction is open on the session's connection. */
  get inTransaction(): boolean {
    const life = this.life;
    if (life.kind === 'active' || life.kind === 'failed') return !(this.options.deferredReads && life.held.pendingBegin !== undefined);
    return life.kind === 'ending';
  }

  /** @internal The session holds a connection, or is acquiring one (something used it). */
  get holdsConnection(): boolean {
    const kind = this.life.kind;
    return kind === 'acquiring' || kind === 'active' || kind === 'failed' || kind === 'ending';
  }

  /** `deferredReads`: the session holds its connection and has run only pure reads, BEGIN still pending. */
  private get deferring(): boolean {
    return this.options.deferredReads && this.life.kind === 'active' && this.life.held.pendingBegin !== undefined;
  }

  /** Aborted when the request that owns the session is aborted, or when the session closes. */
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    if (this.life.kind === 'closed' && !this.controller.signal.aborted) this.controller.abort(new SessionClosedError(this.id));
    return this.controller.signal;
  }

  /** @internal Whether `signal` was aborted, without creating the signal (hot path of every request). */
  get abortRequested(): boolean {
    return this.controller?.signal.aborted === true;
  }

  /** @internal Its owner is ending it, or it is closing or closed: it is nobody's current session any more. */
  get ended(): boolean {
    return this.sealed || this.closing !== undefined || this.life.kind === 'closed';
  }

  /** @internal True when the session holds nothing: no connection, none coming, no hooks waiting. */
  isUntouched(): boolean {
    if (this.life.kind !== 'idle' || this.commitHooks || this.rollbackHooks) return false;
    const tx = this.tx as unknown as { _afterCommitHooks?: unknown[] } | undefined;
    return !tx?._afterCommitHooks?.length;
  }

  /**
   * @internal Close at once, without a promise, when `isUntouched()`: equivalent to commit-or-rollback
   * then `close()` (both no-ops then). Returns false, doing nothing, otherwise.
   */
  closeIfUntouched(): boolean {
    if (!this.isUntouched()) return false;
    this.endCycle('rollback');
    this.move({ kind: 'closed' });
    this.closing = Promise.resolve();
    return true;
  }

  /** @internal Hand the hooks registered so far to `other` (a route's session replacing the request's untouched one). */
  moveHooksTo(other: Session): void {
    for (const hook of this.takeHooks().commit) other.afterCommit(hook);
    for (const hook of this.takeHooks().rollback) other.afterRollback(hook);
    const hooks = (this.tx as unknown as { _afterCommitHooks?: Array<(t: Transaction) => unknown> } | undefined)?._afterCommitHooks;
    if (hooks?.length) for (const hook of hooks.splice(0)) other.afterCommit(() => hook(other.sequelizeTransaction()));
  }

  /** @internal The connection held by the open transaction, if any. */
  get heldConnection(): PooledConnection | undefined {
    return 'held' in this.life ? this.life.held.connection : undefined;
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

  /** The session's Sequelize transaction, beginning it (BEGIN sent) if needed. */
  async transaction(): Promise<Transaction> {
    this.assertUsable();
    const tx = this.sequelizeTransaction();
    const held = await this.connect();
    await serial(held.connection, async () => {
      const pending = held.pendingBegin;
      if (pending === undefined) return;
      if (this.engine.options.echo) this.engine.log(describeBegin(pending));
      try {
        await sendBegin(held.connection, pending);
      } catch (error) {
        // a stale pooled connection died before answering: nothing began, once more on a fresh one
        if (this.transport !== poolTransport || !nothingRan(held.connection, error)) throw error;
        await this.reconnect(held, error);
        await sendBegin(held.connection, pending);
      }
      held.pendingBegin = undefined;
    });
    return tx;
  }

  /**
   * @internal The Sequelize `Transaction` a statement of this session joins. It exists from the
   * session's first use, before any I/O: hooks and `findOrCreate` see it on the very first statement
   * (BEGIN is still deferred to that statement). Its `commit()`/`rollback()` are the session's.
   */
  sequelizeTransaction(): Transaction {
    if (this.tx) return this.tx;
    const tx = new SessionTransaction(this.engine.sequelize, { isolationLevel: this.options.isolationLevel as Transaction.ISOLATION_LEVELS | undefined, readOnly: this.options.readOnly });
    setOwner(tx, this);
    this.tx = tx;
    return tx;
  }

  /** Commit the open transaction (no-op if none), run `afterCommit` hooks, release the connection. */
  async commit(): Promise<void> {
    // once its owner is ending it (the request's outcome is decided), the session is not the handler's to commit
    if (this.sealed || this.closing) throw new SessionClosedError(this.id, this.life.kind !== 'closed');
    await this.settle(() => this.commitNow());
  }

  /** @internal The owner (a request scope) commits the session it sealed. */
  async commitSealed(): Promise<void> {
    this.assertOpen();
    await this.settle(() => this.commitNow());
  }

  private async commitNow(): Promise<void> {
    if (this.life.kind === 'acquiring') await this.life.ready.catch(() => undefined);
    const life = this.life;
    if (life.kind !== 'active' && life.kind !== 'failed') {
      const hooks = this.takeHooks().commit;
      this.collectSequelizeHooks(hooks);
      this.endCycle('commit');
      await this.runHooks('commit', hooks);
      return;
    }
    const held = life.held;
    let failure = life.kind === 'failed' ? life.failure : undefined;
    const startedAt = performance.now();
    this.move({ kind: 'ending', held });
    let error: unknown;
    let destroy = false;
    try {
      await serial(held.connection, async () => {
        if (held.pendingBegin !== undefined) {
          // nothing of a transaction reached the server: nothing to commit. A deferred read that failed still fails the session (rule 7)
          if (failure !== undefined) throw new TransactionAbortedError(this.id, failure);
          return;
        }
        // the client already saw the connection die: the server rolled back, the outcome is known
        if (isBroken(held.connection)) {
          destroy = true;
          throw new Error('the connection was lost before COMMIT was sent; the server rolled the transaction back');
        }
        // a statement queued before commit() may have failed since: COMMIT would only roll back
        failure ??= transactionStatus(held.connection) === 'E' ? (held.failure ?? new Error('the transaction is aborted')) : undefined;
        if (failure !== undefined) {
          await this.transport.rollback(this, held.connection).catch(() => {
            destroy = true;
          });
          throw new TransactionAbortedError(this.id, failure);
        }
        // behind a transaction pooler destroying the connection cleans nothing: check before COMMIT (rule 13)
        if (held.dirty && this.engine.options.sessionStateCheck === 'before-commit') {
          const left = await sessionStateLeft(held.connection);
          if (left.length > 0) {
            failure = new SessionStateLeftError(this.id, left);
            await this.transport.rollback(this, held.connection).catch(() => {
              destroy = true;
            });
            throw failure;
          }
        }
        await this.transport.commit(this, held.connection);
      });
    } catch (caught) {
      error = caught;
      destroy ||= isConnectionError(caught);
    }
    // a read-only session whose replica connection was lost before or during COMMIT: nothing was to be committed (503, not 500)
    const lost = error !== undefined && failure === undefined && (error instanceof CommitOutcomeUnknownError || destroy || isBroken(held.connection)) ? this.replicaLost(held, error, true) : undefined;
    if (error instanceof CommitOutcomeUnknownError && !lost) {
      // the server may have committed: neither afterCommit nor afterRollback hooks run (dropped, counted)
      const unknown = new CommitOutcomeUnknownError(this.id, error.cause);
      const hooks = this.takeHooks();
      const sequelizeHooks: Hook[] = [];
      this.collectSequelizeHooks(sequelizeHooks);
      unknown.droppedHooks = hooks.commit.length + sequelizeHooks.length;
      this.expiring = undefined;
      this.move({ kind: 'idle' }, { outcome: 'unknown', startedAt, destroy: true, reason: unknown });
      this.endCycle('rollback');
      throw unknown;
    }
    if (error !== undefined) {
      const commitError = lost ?? new CommitError(this.id, failure ?? error);
      this.move({ kind: 'idle' }, { outcome: 'rollback', startedAt, destroy: destroy || lost !== undefined, reason: commitError });
      this.expiring = undefined;
      const hooks = this.takeHooks().rollback;
      this.endCycle('rollback');
      await this.runHooks('rollback', hooks);
      throw commitError;
    }
    this.move({ kind: 'idle' }, { outcome: 'commit', startedAt, destroy: false });
    const expiring = this.expiring;
    this.expiring = undefined;
    if (expiring) for (const instance of expiring) expire(instance);
    const hooks = this.takeHooks().commit;
    this.collectSequelizeHooks(hooks);
    this.endCycle('commit');
    await this.runHooks('commit', hooks);
  }

  /** Roll back the open transaction (no-op if none), run `afterRollback` hooks, release the connection. */
  async rollback(): Promise<void> {
    this.assertOpen();
    await this.settle(() => this.rollbackNow(false));
  }

  /** Roll back anything open and release the connection. Idempotent; later use throws `SessionClosedError`. */
  close(): Promise<void> {
    this.closing ??= this.closeNow();
    return this.closing;
  }

  /** Run `fn` in a SAVEPOINT: on throw, roll back to it and rethrow (the outer transaction survives). */
  async beginNested<T>(fn: (session: this) => Promise<T> | T): Promise<T> {
    // inside a unit of this session, a SAVEPOINT of that unit (nesting depth > 1), else of the session
    const parent = unitInScope(this.engine.scope.getStore(), this.tx) ?? (await this.transaction());
    return this.engine.sequelize.transaction({ transaction: parent }, async () => fn(this)) as Promise<T>;
  }

  /**
   * Run `fn` after the next successful COMMIT. Its errors are reported through the `error` event.
   * Inside a nested unit it follows the unit: dropped if the unit rolls back.
   */
  afterCommit(fn: Hook): void {
    this.assertOpen();
    const unit = unitInScope(this.engine.scope.getStore(), this.tx);
    if (unit) addUnitHook(unit, 'commit', fn);
    else (this.commitHooks ??= []).push(fn);
  }

  /** Run `fn` after the next ROLLBACK (including a failed COMMIT); inside a nested unit, when that unit rolls back. */
  afterRollback(fn: Hook): void {
    this.assertOpen();
    const unit = unitInScope(this.engine.scope.getStore(), this.tx);
    if (unit) addUnitHook(unit, 'rollback', fn);
    else (this.rollbackHooks ??= []).push(fn);
  }

  /** @internal A nested unit released (its hooks move up) or rolled back (its rollback hooks run now, its commit hooks are dropped). */
  async unitEnded(unit: Transaction, outcome: 'release' | 'rollback'): Promise<void> {
    if (outcome === 'release') {
      releaseUnitHooks(unit, (hooks) => {
        if (hooks.commit.length) (this.commitHooks ??= []).push(...hooks.commit);
        if (hooks.rollback.length) (this.rollbackHooks ??= []).push(...hooks.rollback);
      });
      return;
    }
    const hooks = takeUnitHooks(unit);
    if (hooks?.rollback.length) await this.runHooks('rollback', hooks.rollback);
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
   * @internal A nested unit (SAVEPOINT) is about to start under `parent`. Units of one session
   * nest strictly: a second unit while a sibling is open (`Promise.all` of two
   * `sequelize.transaction(cb)`) is refused, as are options a savepoint cannot honour.
   * Returns the function that ends the unit's registration.
   */
  enterUnit(parent: Transaction, options: { isolationLevel?: unknown; readOnly?: unknown } | undefined, managed: boolean): (unit?: Transaction) => void {
    this.assertUsable();
    if (options?.isolationLevel !== undefined && options.isolationLevel !== this.options.isolationLevel) {
      throw NestedTransactionError.option(this.id, 'isolationLevel', options.isolationLevel, this.options.isolationLevel);
    }
    if (options?.readOnly === true && !this.options.readOnly) throw NestedTransactionError.option(this.id, 'readOnly', true, false);
    if (!managed) return () => undefined;
    const innermost = this.units.length > 0 ? this.units[this.units.length - 1] : this.tx;
    if (parent !== innermost) throw NestedTransactionError.concurrent(this.id);
    this.units.push({} as Transaction); // keeps the slot until the unit's Transaction exists
    const slot = this.units.length - 1;
    return (unit?: Transaction) => {
      if (unit) {
        this.units[slot] = unit;
        return;
      }
      this.units.splice(slot);
    };
  }

  /** @internal Wait until the session holds a connection (a savepoint needs its parent's). */
  async ensureConnection(): Promise<void> {
    this.assertUsable();
    await this.connect();
  }

  /**
   * @internal Run one statement of this session, joined to `tx` (the session's transaction or one
   * of its savepoints): in order, never after a failure, recording failures. `task` sends it. A
   * pending BEGIN travels with it. Only a failure that left the server's transaction aborted
   * (ReadyForQuery status `E`) fails the session; errors Sequelize raises before sending, and
   * errors trapped inside a savepoint or a PL/pgSQL exception block, leave it usable.
   */
  async runStatement<T>(tx: Transaction, sql: unknown, task: () => Promise<T>, pure = false): Promise<T> {
    this.assertUsable();
    this.assertJoinable(tx);
    const held = await this.connect();
    return serial(held.connection, async () => {
      this.assertJoinable(tx);
      const life = this.life;
      const text = typeof sql === 'string' ? sql : '';
      if (life.kind === 'failed' && !ROLLBACK_TO.test(text)) throw new TransactionAbortedError(this.id, life.failure);
      const control = text ? transactionControlIn(text) : undefined;
      if (control) throw new RawTransactionControlError(this.id, control);
      const readWrite = this.options.readOnly && text ? readWriteSwitchIn(text) : undefined;
      if (readWrite) throw new RawTransactionControlError(this.id, readWrite, "it would make the read-only session's transaction read-write. Open a read-write session to write");
      // decided before sending: a statement that fails half-way (`SELECT pg_advisory_lock(1); SELECT 1/0`) may still leave state
      if (!held.dirty && mayLeaveSessionState(text)) held.dirty = true;
      if (!this.wrote && this.options.readYourWrites && mayWrite(text)) this.wrote = true;
      const connection = held.connection;
      const wrap = this.engine.statementWrapper;
      const send = wrap ? () => wrap(this, task) : task;
      let result: T;
      const pending = held.pendingBegin;
      if (pending !== undefined && pure) {
        // deferredReads: a pure read before the transaction, in autocommit; BEGIN stays pending
        result = await this.deferredRead(held, send);
      } else if (pending !== undefined) {
        held.pendingBegin = undefined;
        if (this.engine.options.echo) this.engine.log(describeBegin(pending));
        let sent = await sendWithBegin(connection, pending, send);
        if (sent.failed && !sent.begun && this.transport === poolTransport && nothingRan(connection, sent.error)) {
          // a stale pooled connection: the first statement (it carries BEGIN) got no reply before
          // the connection died, so nothing of the transaction ran. Once more, on a fresh one.
          await this.reconnect(held, sent.error);
          sent = await sendWithBegin(held.connection, pending, send);
        }
        if (!sent.begun) held.pendingBegin = pending;
        if (sent.failed) throw await this.statementFailed(held, sent.error);
        result = sent.result as T;
      } else {
        try {
          result = await send();
        } catch (error) {
          throw await this.statementFailed(held, error);
        }
      }
      const status = transactionStatus(held.connection);
      if (this.life.kind === 'failed' && (status === 'T' || (status === null && ROLLBACK_TO.test(text)))) {
        held.failure = undefined;
        this.move({ kind: 'active', held });
      }
      return result;
    });
  }

  /** @internal Close immediately by destroying the connection (the server rolls back). Used by dispose. */
  async terminate(): Promise<void> {
    this.terminated = true;
    await this.settled();
    await this.settle(() => this.rollbackNow(true));
    await this.close();
  }

  // -- internals --

  /** The one place the lifecycle changes: checks the move and does its bookkeeping. */
  private move(next: Lifecycle, ended?: Ended): void {
    const from = this.life;
    if (!LEGAL[from.kind].includes(next.kind)) throw new Error(`sessionlocal: illegal session transition ${from.kind} -> ${next.kind} (session ${this.id})`);
    this.life = next;
    if (from.kind === 'acquiring' && next.kind === 'active') {
      this.engine.holding.add(this);
      this.engine.counters.opened++;
      this.counts.transactions++;
      if (this.listens('begin'))
        this.emit('begin', { sessionId: this.id, durationMs: performance.now() - next.held.acquiredAt, readOnly: this.options.readOnly, isolationLevel: this.options.isolationLevel });
    } else if (from.kind === 'ending' && next.kind === 'idle') {
      const { held } = from;
      if (held.leakTimer) clearTimeout(held.leakTimer);
      this.transport.release(this, held.connection, (ended?.destroy ?? false) || held.dirty);
      this.engine.sessionReleased(this);
      const outcome = ended?.outcome ?? 'rollback';
      const durationMs = performance.now() - (ended?.startedAt ?? held.acquiredAt);
      if (outcome === 'commit') {
        this.engine.counters.committed++;
        if (this.listens('commit')) this.emit('commit', { sessionId: this.id, durationMs, ...(this.commitLsn !== undefined && { lsn: this.commitLsn }) });
      } else if (outcome === 'rollback') {
        this.engine.counters.rolledBack++;
        if (this.listens('rollback')) this.emit('rollback', { sessionId: this.id, durationMs, ...(ended?.reason !== undefined && { reason: ended.reason }) });
      } else {
        this.emit('error', { sessionId: this.id, error: ended?.reason, phase: 'commit' });
      }
    } else if (next.kind === 'closed') {
      this.controller?.abort(new SessionClosedError(this.id));
      if (this.listens('close')) this.emit('close', { sessionId: this.id, ...this.counts });
    }
  }

  /** The held connection, acquiring one (and preparing BEGIN) first when needed. */
  private connect(): Promise<Held> {
    const life = this.life;
    if (life.kind === 'active' || life.kind === 'failed') return Promise.resolve(life.held);
    if (life.kind === 'acquiring') return life.ready;
    if (life.kind !== 'idle' || this.closing) return Promise.reject(new SessionClosedError(this.id, life.kind !== 'closed'));
    const ready = this.acquire();
    this.move({ kind: 'acquiring', ready });
    ready.catch(() => undefined);
    return ready;
  }

  private async acquire(): Promise<Held> {
    const started = performance.now();
    let opened: { connection: PooledConnection; pendingBegin?: PendingBegin };
    try {
      opened = await this.transport.open(this);
    } catch (error) {
      this.move({ kind: 'idle' });
      throw error;
    }
    const leakWarningMs = this.options.leakWarningMs;
    const leakTimer =
      leakWarningMs === undefined ? undefined : setTimeout(() => this.emit('leak', { sessionId: this.id, heldMs: performance.now() - started, stack: this.openedStack }), leakWarningMs).unref();
    const held: Held = { connection: opened.connection, acquiredAt: started, leakTimer, pendingBegin: opened.pendingBegin, dirty: false, failure: undefined };
    const tx = this.sequelizeTransaction() as Transaction & { connection?: PooledConnection };
    tx.connection = opened.connection;
    opened.connection.uuid = (tx as unknown as { id: string }).id;
    this.move({ kind: 'active', held });
    return held;
  }

  /** Move the session to a fresh connection (the old one is destroyed); `cause` is thrown when none can be had. */
  private async reconnect(held: Held, cause: unknown): Promise<void> {
    const old = held.connection;
    // the dead connection goes back first: when every connection of the pool died under sessions at
    // once (a reset network), each waiting for a fresh one while holding its dead one would wait for the others
    this.transport.release(this, old, true);
    let fresh: PooledConnection;
    try {
      // the connection that died may not be alone (a reset network cuts every pooled one): a pooled one is checked first
      fresh = await this.engine.acquire(this.options.readOnly, this, { validatePooled: true });
    } catch {
      throw cause;
    }
    const tx = this.sequelizeTransaction() as Transaction & { connection?: PooledConnection; id: string };
    tx.connection = fresh;
    fresh.uuid = tx.id;
    held.connection = fresh;
    handOver(old, fresh);
  }

  /** A pure read sent before BEGIN (`deferredReads`); a stale connection is retried once, as a first statement is. */
  private async deferredRead<T>(held: Held, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (error) {
      if (this.transport !== poolTransport || !nothingRan(held.connection, error)) throw this.deferredReadFailed(held, error);
      await this.reconnect(held, error);
      try {
        return await send();
      } catch (again) {
        throw this.deferredReadFailed(held, again);
      }
    }
  }

  /** A read the server refused fails the session as it would have inside the transaction (rule 7); errors raised before sending do not. */
  private deferredReadFailed(held: Held, error: unknown): unknown {
    if (sqlState(error) === undefined && !isConnectionError(error)) return error;
    held.failure ??= error;
    if (this.life.kind === 'active') this.move({ kind: 'failed', held, failure: error });
    return error;
  }

  private async statementFailed(held: Held, error: unknown): Promise<unknown> {
    const status = await settledStatus(held.connection);
    // a replica connection lost under the statement (backend terminated, standby shutting down, reset): the read cannot go on there (503)
    const lost = status === null || isConnectionError(error) ? this.replicaLost(held, error) : undefined;
    const failure = lost ?? error;
    if (status !== 'E' && status !== null) return failure; // nothing aborted on the server
    held.failure ??= failure;
    if (this.life.kind === 'active') this.move({ kind: 'failed', held, failure });
    return failure;
  }

  /**
   * `ReplicaUnavailableError` when the session's replica connection was lost (a read-only session:
   * nothing to commit, nothing written); `undefined` on the primary, and for sessionlocal's own
   * errors of a statement (a reply deadline stays a `ReplyTimeoutError`).
   */
  private replicaLost(held: Held, error: unknown, commit = false): ReplicaUnavailableError | undefined {
    const replicas = this.engine.replicaSet;
    if (!replicas) return undefined;
    if (error instanceof CommitOutcomeUnknownError) return replicas.lost(held.connection, error.cause ?? error);
    if (!commit && error instanceof SessionLocalError && !(error instanceof ReplicaUnavailableError)) return undefined;
    return replicas.lost(held.connection, error);
  }

  private async rollbackNow(destroy: boolean): Promise<void> {
    if (this.life.kind === 'acquiring') await this.life.ready.catch(() => undefined);
    const life = this.life;
    const hooks = this.takeHooks().rollback;
    if (life.kind === 'active' || life.kind === 'failed') {
      const { held } = life;
      const startedAt = performance.now();
      let broken = destroy || isBroken(held.connection);
      this.move({ kind: 'ending', held });
      if (!broken) {
        await serial(held.connection, () => (held.pendingBegin === undefined ? this.transport.rollback(this, held.connection) : Promise.resolve())).catch(() => {
          broken = true;
        });
      }
      this.move({ kind: 'idle' }, { outcome: 'rollback', startedAt, destroy: broken });
    }
    this.expiring = undefined;
    this.endCycle('rollback');
    await this.runHooks('rollback', hooks);
  }

  private async closeNow(): Promise<void> {
    if (this.life.kind === 'closed') return;
    try {
      await this.settled();
      await this.settle(() => this.rollbackNow(false));
    } finally {
      this.move({ kind: 'closed' });
    }
  }

  /** Run a COMMIT or ROLLBACK after any one in flight (never two at once on the session). */
  private settle<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.settling;
    const run = previous ? previous.then(fn, fn) : fn();
    this.settling = run;
    const clear = () => {
      if (this.settling === run) this.settling = undefined;
    };
    run.then(clear, clear);
    return run;
  }

  /** Wait until no COMMIT, ROLLBACK or acquire is in flight. */
  private async settled(): Promise<void> {
    while (this.settling || this.life.kind === 'acquiring') {
      if (this.settling) await this.settling.catch(() => undefined);
      if (this.life.kind === 'acquiring') await this.life.ready.catch(() => undefined);
    }
  }

  /** The transaction object's cycle is over: later use of it throws `TransactionEndedError`. */
  private endCycle(outcome: 'commit' | 'rollback'): void {
    const tx = this.tx as (Transaction & { finished?: string; connection?: PooledConnection }) | undefined;
    if (!tx) return;
    tx.finished ??= outcome;
    tx.connection = undefined;
    this.tx = undefined;
    this.units = [];
  }

  private collectSequelizeHooks(hooks: Hook[]): void {
    const tx = this.tx;
    const sequelizeHooks = (tx as unknown as { _afterCommitHooks?: Array<(t: Transaction) => unknown> } | undefined)?._afterCommitHooks;
    if (tx && sequelizeHooks) for (const hook of sequelizeHooks) hooks.push(() => hook(tx));
  }

  private assertOpen(): void {
    if (this.life.kind === 'closed') throw new SessionClosedError(this.id);
  }

  private assertUsable(): void {
    if (this.sealed || this.closing || this.life.kind === 'closed') throw new SessionClosedError(this.id, this.life.kind !== 'closed');
  }

  /** `tx` must be this cycle's transaction (or a live savepoint of it), never one that ended. */
  private assertJoinable(tx: Transaction): void {
    const finished = (tx as unknown as { finished?: string }).finished;
    let root = tx as Transaction & { parent?: Transaction };
    while (root.parent) root = root.parent as typeof root;
    if (root !== this.tx || (finished !== undefined && tx === root)) throw new TransactionEndedError(this.id, finished);
  }

  private takeHooks(): { commit: Hook[]; rollback: Hook[] } {
    const hooks = { commit: this.commitHooks ?? [], rollback: this.rollbackHooks ?? [] };
    this.commitHooks = undefined;
    this.rollbackHooks = undefined;
    // units still open when the transaction ends (db.commit() inside beginNested) end with it
    for (const unit of this.units) {
      const own = takeUnitHooks(unit);
      if (!own) continue;
      hooks.commit.push(...own.commit);
      hooks.rollback.push(...own.rollback);
    }
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

  /** Whether anyone listens (payloads are built only then: this runs on every request). */
  private listens(event: string): boolean {
    return (this.factory as unknown as { listens(e: string): boolean }).listens(event);
  }

  private emit(event: string, payload: object): void {
    (this.factory as unknown as { emitEvent(e: string, p: object): void }).emitEvent(event, payload);
  }
}

/** A session's own Sequelize transaction: ending it ends the session's; an ended one refuses, as Sequelize's does. */
class SessionTransaction extends Transaction {
  override commit(): Promise<void> {
    const finished = (this as unknown as { finished?: string }).finished;
    if (finished) return Promise.reject(new Error(`Transaction cannot be committed because it has been finished with state: ${finished}`));
    return (ownerOf(this) as Session).commit();
  }

  override rollback(): Promise<void> {
    const finished = (this as unknown as { finished?: string }).finished;
    if (finished) return Promise.reject(new Error(`Transaction cannot be rolled back because it has been finished with state: ${finished}`));
    return (ownerOf(this) as Session).rollback();
  }
}

/**
 * A session's first statement failed before anything reached the server: the stale connection
 * died unanswered, or its replica was marked down before the statement was sent. It can run
 * again on a fresh connection (another replica, or the primary as the fallback).
 */
function nothingRan(connection: PooledConnection, error: unknown): boolean {
  return lostUnanswered(connection) || error instanceof ReplicaUnavailableError;
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

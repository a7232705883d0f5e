import { EventEmitter } from 'node:events';
import { checkIsolationLevel, checkSettings, type IsolationLevel } from './config.js';
import type { Engine } from './engine.js';
import { CommitOutcomeUnknownError, ConfigError, EngineDisposedError, NoActiveSessionError, sqlState } from './errors.js';
import { installExpiryTracking } from './expire.js';
import { Session } from './session.js';
import type { SessionTransport } from './transport.js';

/** Options of `sessionmaker`; each can be overridden per session: `SessionLocal({ readOnly: true })`. */
export interface SessionOptions {
  /** Expire instances loaded or saved through the session at commit (default false). */
  expireOnCommit?: boolean;
  /** `READ UNCOMMITTED` | `READ COMMITTED` | `REPEATABLE READ` | `SERIALIZABLE` (default: the server's). */
  isolationLevel?: IsolationLevel | (string & {});
  /** BEGIN ... READ ONLY, and use a read replica when the engine has some. */
  readOnly?: boolean;
  /** Transaction-local settings (`set_config(name, value, true)`), e.g. `{ 'app.tenant_id': '42' }`. */
  settings?: Record<string, string>;
  /** Emit `leak` when the session holds its connection longer than this. */
  leakWarningMs?: number;
  /**
   * Run the session's leading pure reads (model finders without `lock`, `fn` or `literal`) before
   * its transaction begins, in autocommit: a session that only reads costs one round trip per
   * read, no BEGIN, no COMMIT. Needs `isolationLevel: 'READ COMMITTED'`; not with `settings`.
   * Changes rules 1-2 only as docs/semantics.md ("Deferred reads") says. Default false.
   */
  deferredReads?: boolean;
}

export interface ResolvedSessionOptions {
  readonly expireOnCommit: boolean;
  readonly isolationLevel: IsolationLevel | undefined;
  readonly readOnly: boolean;
  readonly settings: Record<string, string> | undefined;
  readonly leakWarningMs: number | undefined;
  readonly deferredReads: boolean;
}

/** Options of `SessionLocal.begin`. */
export interface BeginOptions extends SessionOptions {
  /** Re-run the whole function on serialization failure (40001) or deadlock (40P01). */
  retry?: { attempts: number; baseDelayMs?: number; maxDelayMs?: number };
}

/** Payloads of the events a factory emits. */
export interface SessionEvents {
  begin: { sessionId: number; durationMs: number; readOnly: boolean; isolationLevel: string | undefined };
  commit: { sessionId: number; durationMs: number };
  rollback: { sessionId: number; durationMs: number; reason?: unknown };
  /** `transactions` begun and `savepoints` made over the session's life. */
  close: { sessionId: number; transactions: number; savepoints: number };
  leak: { sessionId: number; heldMs: number; stack: string | undefined };
  /** A hook failed, or (`phase: 'commit'`) a COMMIT's outcome is unknown (`CommitOutcomeUnknownError`). */
  error: { sessionId: number; error: unknown; phase: 'afterCommit' | 'afterRollback' | 'commit' };
}

export type SessionEvent = keyof SessionEvents;

/** `SessionLocal`: call it for a new session; `begin(fn)` for a whole unit of work. */
export interface SessionFactory<S extends Session = Session> {
  (overrides?: SessionOptions): S;
  readonly engine: Engine;
  readonly options: ResolvedSessionOptions;
  /** Open a session, run `fn` in its scope, commit on success, roll back on throw, close always. */
  begin<T>(fn: (session: S) => Promise<T> | T, options?: BeginOptions): Promise<T>;
  /** The session of the current async context; throws `NoActiveSessionError` outside one. */
  current(): Session;
  /** The session of the current async context, or `undefined`. */
  currentOrUndefined(): Session | undefined;
  on<E extends SessionEvent>(event: E, listener: (payload: SessionEvents[E]) => void): SessionFactory<S>;
  off<E extends SessionEvent>(event: E, listener: (payload: SessionEvents[E]) => void): SessionFactory<S>;
}

/** Validate session options; `base` supplies what `options` leaves out. */
export function resolveSessionOptions(options: SessionOptions | undefined, base?: ResolvedSessionOptions): ResolvedSessionOptions {
  if (options !== undefined && (options === null || typeof options !== 'object')) throw new ConfigError('options', 'must be an object');
  const o = options ?? {};
  if (o.leakWarningMs !== undefined && (!Number.isInteger(o.leakWarningMs) || o.leakWarningMs <= 0)) {
    throw new ConfigError('leakWarningMs', `must be a positive integer, got ${JSON.stringify(o.leakWarningMs)}`);
  }
  if (o.deferredReads !== undefined && typeof o.deferredReads !== 'boolean') throw new ConfigError('deferredReads', `must be a boolean, got ${JSON.stringify(o.deferredReads)}`);
  const resolved: ResolvedSessionOptions = {
    expireOnCommit: o.expireOnCommit ?? base?.expireOnCommit ?? false,
    isolationLevel: o.isolationLevel !== undefined ? checkIsolationLevel(o.isolationLevel) : base?.isolationLevel,
    readOnly: o.readOnly ?? base?.readOnly ?? false,
    // merged per name: a request's tenant id must not drop the factory's statement_timeout
    settings: o.settings !== undefined ? mergeSettings(base?.settings, checkSettings(o.settings)) : base?.settings,
    leakWarningMs: o.leakWarningMs ?? base?.leakWarningMs,
    deferredReads: o.deferredReads ?? base?.deferredReads ?? false,
  };
  if (resolved.deferredReads) checkDeferredReads(resolved);
  return resolved;
}

/** Deferred reads are equivalent to one transaction only under READ COMMITTED, and settings must hold for every statement. */
function checkDeferredReads(options: ResolvedSessionOptions): void {
  if (options.isolationLevel !== 'READ COMMITTED') {
    const got = options.isolationLevel === undefined ? "the server's default (unknown to the client)" : JSON.stringify(options.isolationLevel);
    throw new ConfigError('deferredReads', `needs isolationLevel: 'READ COMMITTED' set explicitly, got ${got}`);
  }
  if (options.settings) {
    throw new ConfigError(
      'deferredReads',
      `cannot be combined with settings (${Object.keys(options.settings).join(', ')}): a read before BEGIN would run without them; pass deferredReads: false for sessions with settings`,
    );
  }
}

function mergeSettings(base: Record<string, string> | undefined, own: Record<string, string> | undefined): Record<string, string> | undefined {
  if (!base) return own;
  if (!own) return base;
  return { ...base, ...own };
}

/**
 * Make a session factory ("SessionLocal") bound to an engine.
 * @example
 * const SessionLocal = sessionmaker(engine, { expireOnCommit: false });
 * await SessionLocal.begin(async (db) => { await Item.create({ name: 'pen' }); });
 */
export function sessionmaker(engine: Engine, options?: SessionOptions): SessionFactory {
  return createFactory(engine, resolveSessionOptions(options));
}

/** @internal Shared by `sessionmaker` and the testing helpers. */
export function createFactory(engine: Engine, defaults: ResolvedSessionOptions, transport?: SessionTransport): SessionFactory {
  const emitter = new EventEmitter();
  if (defaults.expireOnCommit) installExpiryTracking(engine);

  const factory = ((overrides?: SessionOptions): Session => {
    if (engine.isDisposed) throw new EngineDisposedError();
    const resolved = overrides === undefined ? defaults : resolveSessionOptions(overrides, defaults);
    if (resolved.expireOnCommit && !defaults.expireOnCommit) installExpiryTracking(engine);
    return new Session(engine, factory, resolved, transport);
  }) as SessionFactory & { emitEvent(event: string, payload: object): void };

  // an ended (or ending) session is not current: a timer a request left behind finds none (its statements throw SessionClosedError)
  const current = (): Session | undefined => {
    const session = engine.scope.getStore()?.session;
    return session && !session.ended ? session : undefined;
  };

  Object.defineProperties(factory, {
    engine: { value: engine },
    options: { value: defaults },
  });
  Object.assign(factory, {
    async begin<T>(fn: (session: Session) => Promise<T> | T, opts: BeginOptions = {}): Promise<T> {
      const { retry, ...overrides } = opts;
      const attempts = retry?.attempts ?? 1;
      if (!Number.isInteger(attempts) || attempts < 1) throw new ConfigError('retry.attempts', `must be an integer >= 1, got ${JSON.stringify(attempts)}`);
      const hasOverrides = Object.keys(overrides).length > 0;
      for (let attempt = 1; ; attempt++) {
        const session = factory(hasOverrides ? overrides : undefined);
        try {
          return await runUnit(session, fn);
        } catch (error) {
          if (attempt >= attempts || !isRetryable(error)) throw error;
        }
        await delay(backoff(attempt, retry?.baseDelayMs ?? 10, retry?.maxDelayMs ?? 500));
      }
    },
    current(): Session {
      const session = current();
      if (!session) throw new NoActiveSessionError();
      return session;
    },
    currentOrUndefined: current,
    on(event: SessionEvent, listener: (payload: any) => void) {
      emitter.on(event, listener);
      return factory;
    },
    off(event: SessionEvent, listener: (payload: any) => void) {
      emitter.off(event, listener);
      return factory;
    },
    listens(event: string): boolean {
      return emitter.listenerCount(event) > 0;
    },
    emitEvent(event: string, payload: object) {
      if (emitter.listenerCount(event) > 0) {
        emitter.emit(event, payload);
      } else if (event === 'error') {
        const { error, phase } = payload as SessionEvents['error'];
        const what = phase === 'commit' ? 'the outcome of a COMMIT is unknown' : `an ${phase} hook failed`;
        process.emitWarning(`sessionlocal: ${what} and no 'error' listener is registered: ${error instanceof Error ? error.message : String(error)}`);
      }
    },
  });
  return factory;
}

async function runUnit<T>(session: Session, fn: (session: Session) => Promise<T> | T): Promise<T> {
  try {
    return await session.run(async () => {
      const result = await fn(session);
      await session.commit();
      return result;
    });
  } finally {
    await session.close();
  }
}

const RETRYABLE = new Set(['40001', '40P01']);

function isRetryable(error: unknown): boolean {
  // the server may have committed: running fn again could do the work twice
  if (error instanceof CommitOutcomeUnknownError) return false;
  const code = sqlState(error);
  return code !== undefined && RETRYABLE.has(code);
}

function backoff(attempt: number, base: number, max: number): number {
  const ceiling = Math.min(max, base * 2 ** (attempt - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

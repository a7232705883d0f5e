import { checkSettings } from './config.js';
import { CommitError, ConfigError as SessionLocalConfigError, PoolTimeoutError, SessionLocalError } from './errors.js';
import type { Session } from './session.js';
import type { SessionFactory } from './sessionmaker.js';

/** When the session ends relative to the response. */
export type FinishMode = 'before-response' | 'after-response';

/** Options shared by the three adapters (same names, same meaning). */
export interface RequestSessionOptions<Req> {
  /** The `SessionLocal` to open request sessions from (swap it in tests). */
  factory: SessionFactory;
  /** Commit when this returns true for the response status (default: `status < 400`). */
  commitWhen?: (status: number) => boolean;
  /** `'before-response'` (default): COMMIT completes before the status line is sent. */
  finish?: FinishMode;
  /** Per-request transaction-local settings (`set_config(name, value, true)`). */
  settings?: (req: Req) => Record<string, string> | undefined;
  /** Per-request read-only session. */
  readOnly?: (req: Req) => boolean;
}

/** Per-route control: `false` opts the route out of the session; an object changes the options. */
export type RouteSessionOptions<Req> = false | Partial<Omit<RequestSessionOptions<Req>, 'factory'>>;

/** How a request ended, as the adapter saw it. */
export interface RequestOutcome {
  status: number;
  error?: unknown;
}

/** What ending the scope decided. `response` is set when the client must get an error instead. */
export interface RequestResult {
  committed: boolean;
  error?: unknown;
  response?: HttpError;
}

/** An HTTP error response for a sessionlocal error. */
export interface HttpError {
  status: number;
  headers: Record<string, string>;
  body: { error: string; message: string };
}

const defaultCommitWhen = (status: number) => status < 400;

/** The session of one request and the decision of how it ends. Adapters only call these methods. */
export class RequestScope {
  readonly session: Session;
  readonly finish: FinishMode;
  private readonly commitWhen: (status: number) => boolean;
  private ending: Promise<RequestResult> | undefined;

  constructor(session: Session, finish: FinishMode, commitWhen: (status: number) => boolean) {
    this.session = session;
    this.finish = finish;
    this.commitWhen = commitWhen;
  }

  /** Run the rest of the request (`next`) with the session as the current one. */
  run<T>(fn: () => T): T {
    return this.session.run(fn);
  }

  /** The client went away: abort `session.signal` now; `end()` will roll back. */
  abort(reason: unknown = new Error('client disconnected')): void {
    this.session.abort(reason);
  }

  get aborted(): boolean {
    return this.session.signal.aborted;
  }

  /**
   * End the request's session: commit when the handler succeeded, the status passes
   * `commitWhen` and the client is still there; otherwise roll back. Always closes. Idempotent.
   */
  end(outcome: RequestOutcome): Promise<RequestResult> {
    this.ending ??= this.endNow(outcome);
    return this.ending;
  }

  private async endNow(outcome: RequestOutcome): Promise<RequestResult> {
    const session = this.session;
    try {
      if (outcome.error !== undefined || this.aborted || !this.commitWhen(outcome.status)) {
        return { committed: false, error: outcome.error };
      }
      try {
        await session.commit();
        return { committed: true };
      } catch (error) {
        return { committed: false, error, response: httpErrorFor(error) };
      }
    } finally {
      await session.close();
    }
  }
}

/**
 * Open the session scope of one request, or `undefined` when the route opted out.
 * No I/O: the connection is acquired by the first query.
 */
export function openRequestScope<Req>(options: RequestSessionOptions<Req>, req: Req, route?: RouteSessionOptions<Req>): RequestScope | undefined {
  if (route === false) return undefined;
  const merged = route ? { ...options, ...route } : options;
  const settings = merged.settings ? checkSettings(merged.settings(req)) : undefined;
  const readOnly = merged.readOnly ? merged.readOnly(req) : undefined;
  const session = settings === undefined && readOnly === undefined ? options.factory() : options.factory({ ...(settings && { settings }), ...(readOnly !== undefined && { readOnly }) });
  return new RequestScope(session, merged.finish ?? 'before-response', merged.commitWhen ?? defaultCommitWhen);
}

/** Validate adapter options once, at registration (`ConfigError` naming the field). */
export function checkRequestSessionOptions<Req>(options: RequestSessionOptions<Req>): RequestSessionOptions<Req> {
  if (!options || typeof options.factory !== 'function') {
    throw new SessionLocalConfigError('factory', 'is required: pass the SessionLocal made by sessionmaker(engine)');
  }
  if (options.finish !== undefined && options.finish !== 'before-response' && options.finish !== 'after-response') {
    throw new SessionLocalConfigError('finish', `must be 'before-response' or 'after-response', got ${JSON.stringify(options.finish)}`);
  }
  for (const key of ['commitWhen', 'settings', 'readOnly'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') throw new SessionLocalConfigError(key, 'must be a function');
  }
  return options;
}

/**
 * The HTTP answer for errors the session layer owns: `PoolTimeoutError` -> 503 with
 * `Retry-After`, `CommitError` -> 500. Anything else: `undefined` (the framework handles it).
 */
export function httpErrorFor(error: unknown): HttpError | undefined {
  const found = findSessionError(error);
  if (found instanceof PoolTimeoutError) {
    return { status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_busy', message: 'The database is busy; retry shortly.' } };
  }
  if (found instanceof CommitError) {
    return { status: 500, headers: {}, body: { error: 'commit_failed', message: 'The transaction could not be committed; nothing was saved.' } };
  }
  return undefined;
}

function findSessionError(error: unknown): SessionLocalError | undefined {
  let current = error;
  for (let depth = 0; depth < 5 && current && typeof current === 'object'; depth++) {
    if (current instanceof SessionLocalError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}


import pg from 'pg';
import { CommitOutcomeUnknownError, ReplyTimeoutError, type SessionLocalError } from './errors.js';
import type { PendingBegin } from './transport.js';

type Callback = (error: Error | null, result?: unknown) => void;

/** A statement sent ahead of another in the same pipeline (BEGIN, the settings call). */
interface Prelude {
  readonly text: string;
  readonly values: readonly unknown[];
}

/**
 * BEGIN (and the session's settings call) and a session's first statement in one
 * extended-protocol pipeline with a single Sync: `Parse/Bind/Execute(BEGIN)
 * [Parse/Bind/Describe/Execute(set_config…)] Parse/Bind/Describe/Execute(statement) Sync`.
 * PostgreSQL answers all of them before the one ReadyForQuery, so the lot costs one round trip.
 * All or nothing: if BEGIN or a setting fails, the server skips everything up to Sync, so the
 * statement can never run outside the transaction or without its settings. The caller gets the
 * statement's own result, as if it had been sent alone.
 */
class BeginThenQuery extends (pg.Query as unknown as new (text: string, values: unknown[], callback: Callback) => PgQuery) {
  /** Sent first; empty when BEGIN is already part of a simple query's text. */
  private readonly prelude: readonly Prelude[];

  constructor(prelude: readonly Prelude[], text: string, values: unknown[], callback: Callback) {
    super(text, values, callback);
    this.prelude = prelude;
  }

  override requiresPreparation(): boolean {
    return this.prelude.length > 0 || super.requiresPreparation();
  }

  override prepare(connection: PgConnection): void {
    for (const { text, values } of this.prelude) {
      connection.parse({ text, name: '', types: [] });
      connection.bind({ portal: '', statement: '', values: values as unknown[] });
      // a row-returning prelude (set_config) is described, so pg parses its row into its own result
      if (values.length > 0) connection.describe({ type: 'P', name: '' });
      connection.execute({ portal: '', rows: 0 });
    }
    super.prepare(connection);
  }

  override handleReadyForQuery(connection: PgConnection): void {
    // each prelude's CommandComplete made pg collect one result more: answer with the statement's
    const results = this._results;
    const extra = this.prelude.length;
    if (extra > 0 && Array.isArray(results) && results.length > extra) {
      results.splice(0, extra);
      this._results = results.length === 1 ? (results[0] as { command?: string }) : results;
    }
    super.handleReadyForQuery(connection);
  }
}

/** One statement, maybe `;`-terminated: the extended protocol takes it (it refuses several). */
function isSingleStatement(text: string): boolean {
  const semicolon = text.indexOf(';');
  return semicolon === -1 || text.slice(semicolon + 1).trim() === '';
}

/** `pg.Client` options of sessionlocal's own (pg ignores unknown keys). */
export interface SessionClientConfig extends pg.ClientConfig {
  /** Reply deadline of every statement, from when it is written (ms; undefined or 0: none). */
  replyTimeoutMs?: number;
}

const COMMIT = /^\s*(COMMIT|END)\b/i;
const CONNECTION_LOST = /^(08|57P)/;

/**
 * The `pg.Client` sessions run on. It listens for `error` from construction (a backend killed
 * while connecting must not crash the process), can send a pending BEGIN in front of the next
 * statement (see `BeginThenQuery`; only `sendWithBegin` below sets it), and enforces a reply
 * deadline per statement, started when pg writes the statement to the socket (pg's own
 * `query_timeout` starts when the query is queued). Past the deadline the socket is destroyed:
 * the statement fails with `ReplyTimeoutError` (a COMMIT with `CommitOutcomeUnknownError`) and
 * the client is never reused.
 */
export class SessionClient extends pg.Client {
  /** @internal BEGIN (and settings) to send with the next statement; consumed by the next `query()`. */
  beginWithNext: PendingBegin | undefined;

  /** @internal Reply deadline of statements written from now on (the engine sets it per session). */
  replyTimeoutMs: number | undefined;
  /** @internal The deadline of connections not held by a session. */
  readonly defaultReplyTimeoutMs: number | undefined;
  /** @internal The transaction status of the server's last ReadyForQuery (`I`, `T`, `E`). */
  txStatus: 'I' | 'T' | 'E' | null = null;
  /** @internal When the connection went back to the pool (validation on borrow). */
  idleSince: number | undefined;
  /** @internal The connection died with nothing answered since the last statement was written (or with nothing written). */
  lostUnanswered = false;
  private answered = true;
  private deadline: NodeJS.Timeout | undefined;
  private abandoned: SessionLocalError | undefined;

  constructor(config?: string | SessionClientConfig) {
    super(config);
    const ms = typeof config === 'object' ? config.replyTimeoutMs : undefined;
    this.defaultReplyTimeoutMs = ms ? ms : undefined;
    this.replyTimeoutMs = this.defaultReplyTimeoutMs;
    this.on('error', () => {
      (this as { _invalid?: boolean })._invalid = true;
    });
  }

  /** @internal The text of the statement written and not yet answered, if any. */
  get inFlight(): string | undefined {
    const active = (this as unknown as PgClientInternals)._activeQuery;
    return active ? (active.text ?? '') : undefined;
  }

  /**
   * @internal Destroy the socket now: the statement in flight fails with `error` (a COMMIT in
   * flight with `CommitOutcomeUnknownError`), queued ones with a connection error. Never reused.
   */
  abandon(error: SessionLocalError): void {
    if (this.abandoned) return;
    this.abandoned = error;
    const self = this as unknown as PgClientInternals & { _invalid?: boolean };
    self._invalid = true;
    // _ending: pg reports the end as "Connection terminated" to the queries and emits no 'error'
    self._ending = true;
    this.clearDeadline();
    self.connection.stream.destroy();
  }

  /** @internal pg: writes the next queued query to the socket; the reply deadline starts here. */
  _pulseQueryQueue(): void {
    const self = this as unknown as PgClientInternals;
    const before = self._activeQuery;
    (pg.Client.prototype as unknown as PgClientInternals)._pulseQueryQueue.call(this);
    const active = self._activeQuery;
    if (active === before) return;
    this.clearDeadline();
    if (active) this.answered = false;
    const ms = this.replyTimeoutMs;
    if (active && ms) {
      this.deadline = setTimeout(() => {
        // a reply read in this same loop turn is handled first (poll phase), then we decide
        setImmediate(() => {
          if (self._activeQuery !== active || this.abandoned) return;
          const timeout = new ReplyTimeoutError(ms, active.text ?? '');
          this.abandon(COMMIT.test(active.text ?? '') ? new CommitOutcomeUnknownError(undefined, timeout) : timeout);
        });
      }, ms);
    }
  }

  /** @internal pg: the first message of a reply (with `_handleCommandComplete`, `_handleRowDescription`, `_handleEmptyQuery`). */
  _handleParseComplete(message: unknown): void {
    this.answered = true;
    (pg.Client.prototype as unknown as PgClientInternals)._handleParseComplete.call(this, message);
  }

  /** @internal */
  _handleCommandComplete(message: unknown): void {
    this.answered = true;
    (pg.Client.prototype as unknown as PgClientInternals)._handleCommandComplete.call(this, message);
  }

  /** @internal */
  _handleRowDescription(message: unknown): void {
    this.answered = true;
    (pg.Client.prototype as unknown as PgClientInternals)._handleRowDescription.call(this, message);
  }

  /** @internal */
  _handleEmptyQuery(message: unknown): void {
    this.answered = true;
    (pg.Client.prototype as unknown as PgClientInternals)._handleEmptyQuery.call(this, message);
  }

  /** @internal pg: the reply is complete. */
  _handleReadyForQuery(message: unknown): void {
    this.answered = true;
    this.clearDeadline();
    // the status byte, recorded here too: pg < 8.21 has no getTransactionStatus()
    this.txStatus = ((message as { status?: string } | undefined)?.status as 'I' | 'T' | 'E' | undefined) ?? null;
    (pg.Client.prototype as unknown as PgClientInternals)._handleReadyForQuery.call(this, message);
  }

  /** @internal pg: an ErrorResponse. A connection-class error answering a COMMIT leaves its outcome unknown. */
  _handleErrorMessage(message: { code?: string }): void {
    this.answered = true;
    const self = this as unknown as PgClientInternals;
    const active = self._activeQuery;
    if (active && COMMIT.test(active.text ?? '') && CONNECTION_LOST.test(message.code ?? '')) {
      const handle = active.handleError.bind(active);
      active.handleError = (error, connection) => handle(new CommitOutcomeUnknownError(undefined, error), connection);
    }
    (pg.Client.prototype as unknown as PgClientInternals)._handleErrorMessage.call(this, message);
  }

  /** @internal pg: the socket is gone. The statement in flight gets the abandon reason, or, if it is a COMMIT, outcome unknown. */
  _errorAllQueries(error: Error): void {
    const self = this as unknown as PgClientInternals;
    const active = self._activeQuery;
    this.lostUnanswered = !this.abandoned && (!active || !this.answered);
    if (active) {
      const text = active.text ?? '';
      const reason = this.abandoned ?? (COMMIT.test(text) ? new CommitOutcomeUnknownError(undefined, error) : error);
      self._activeQuery = null;
      process.nextTick(() => active.handleError(reason, self.connection));
    }
    (pg.Client.prototype as unknown as PgClientInternals)._errorAllQueries.call(
      this,
      this.abandoned ? new Error('Connection terminated: an earlier statement passed its reply deadline', { cause: this.abandoned }) : error,
    );
    this.clearDeadline();
  }

  private clearDeadline(): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = undefined;
  }

  // biome-ignore lint/suspicious/noExplicitAny: pg's overloads
  override query(config: any, values?: any, callback?: any): any {
    const begin = this.beginWithNext;
    if (begin === undefined) return super.query(config, values, callback);
    this.beginWithNext = undefined;
    if (typeof values === 'function') {
      callback = values;
      values = undefined;
    }
    if (typeof callback !== 'function') {
      return new Promise((resolve, reject) => this.queryAfterBegin(begin, config, values, (error, result) => (error ? reject(error) : resolve(result))));
    }
    this.queryAfterBegin(begin, config, values, callback);
    return undefined;
  }

  private queryAfterBegin(begin: PendingBegin, config: unknown, values: unknown, callback: Callback): void {
    const settings = begin.settings;
    if (typeof config === 'string') {
      const params = Array.isArray(values) ? values : [];
      if (params.length === 0 && settings === undefined) {
        // one simple query `BEGIN; <text>` (PostgreSQL runs a multi-statement simple query all or
        // nothing up to the failing statement)
        super.query(new BeginThenQuery(NO_PRELUDE, `${begin.text}; ${config}`, params, callback) as unknown as pg.QueryConfig);
        return;
      }
      if (params.length > 0 || isSingleStatement(config)) {
        // one extended-protocol pipeline: BEGIN, the settings, the statement, one Sync
        const prelude: Prelude[] = [{ text: begin.text, values: NO_VALUES }];
        if (settings) prelude.push(settings);
        super.query(new BeginThenQuery(prelude, config, params, callback) as unknown as pg.QueryConfig);
        return;
      }
    }
    // a query object, or several statements with settings (the extended protocol takes one):
    // BEGIN and the settings in one round trip first, then the statement
    const then = (error: Error | null) => {
      if (error) callback(error);
      else (super.query as (c: unknown, v: unknown, cb: Callback) => void).call(this, config, values, callback);
    };
    if (settings) super.query(new BeginThenQuery([{ text: begin.text, values: NO_VALUES }], settings.text, settings.values, then) as unknown as pg.QueryConfig);
    else super.query(begin.text, then);
  }
}

const NO_PRELUDE: readonly Prelude[] = [];
const NO_VALUES: readonly unknown[] = [];

/** The outcome of a statement sent with a pending BEGIN. */
export interface BegunStatement<T> {
  /** Whether BEGIN reached the server and opened the transaction (read from the server's ReadyForQuery status). */
  begun: boolean;
  result?: T;
  error?: unknown;
  failed: boolean;
}

/**
 * Run `task` (one statement sent through Sequelize on `connection`) with `begin` travelling in the
 * same round trip. The only place that decides how BEGIN rides: reports whether it was sent, so the
 * caller keeps it pending when nothing reached the server (an error thrown before sending).
 */
export async function sendWithBegin<T>(connection: pg.Client, begin: PendingBegin, task: () => Promise<T>): Promise<BegunStatement<T>> {
  let outcome: BegunStatement<T>;
  if (connection instanceof SessionClient) {
    connection.beginWithNext = begin;
    try {
      outcome = { begun: false, result: await task(), failed: false };
    } catch (error) {
      outcome = { begun: false, error, failed: true };
    }
    const consumed = connection.beginWithNext === undefined;
    connection.beginWithNext = undefined;
    // on success the reply (ReadyForQuery) is in: no need to wait for it
    const status = outcome.failed ? await settledStatus(connection) : transactionStatus(connection);
    // null: the connection ended before answering: whatever began died with it
    outcome.begun = consumed && (status === 'T' || status === 'E');
    return outcome;
  }
  await connection.query(begin.text);
  if (begin.settings) await connection.query(begin.settings.text, begin.settings.values as string[]);
  try {
    return { begun: true, result: await task(), failed: false };
  } catch (error) {
    return { begun: true, error, failed: true };
  }
}

/** BEGIN on its own (`session.begin()`): with settings, BEGIN and the settings call in one pipeline. */
export async function sendBegin(connection: pg.Client, begin: PendingBegin): Promise<void> {
  const settings = begin.settings;
  if (!settings) {
    await connection.query(begin.text);
    return;
  }
  if (connection instanceof SessionClient) {
    connection.beginWithNext = { text: begin.text, settings: undefined };
    try {
      await connection.query(settings.text, settings.values);
    } finally {
      connection.beginWithNext = undefined;
    }
    return;
  }
  await connection.query(begin.text);
  await connection.query(settings.text, settings.values);
}

/**
 * The transaction status once the server has answered the statement in flight. pg calls a
 * query's callback on ErrorResponse, before the ReadyForQuery that carries the status: read it
 * after that message (or `null` if the connection ends first).
 */
export function settledStatus(connection: pg.Client): Promise<'I' | 'T' | 'E' | null> {
  const client = connection as unknown as { readyForQuery?: boolean; _ending?: boolean; _queryable?: boolean; connection?: NodeJS.EventEmitter & { stream?: { destroyed?: boolean } } };
  const events = client.connection;
  if (client.readyForQuery !== false || !events) return Promise.resolve(transactionStatus(connection));
  if (client._ending || client._queryable === false || events.stream?.destroyed) return Promise.resolve(null);
  return new Promise((resolve) => {
    const done = () => {
      events.off('readyForQuery', done);
      events.off('end', done);
      connection.off('end', done);
      resolve(client.readyForQuery === false ? null : transactionStatus(connection));
    };
    // pg's own listener (registered at connect) runs first and records the status
    events.on('readyForQuery', done);
    events.on('end', done);
    connection.on('end', done);
  });
}

/** The transaction status of the server's last ReadyForQuery: `I` idle, `T` in a transaction, `E` aborted transaction. */
export function transactionStatus(connection: pg.Client): 'I' | 'T' | 'E' | null {
  if (connection instanceof SessionClient) return connection.txStatus;
  const read = (connection as { getTransactionStatus?: () => 'I' | 'T' | 'E' | null }).getTransactionStatus;
  return typeof read === 'function' ? read.call(connection) : null;
}

/**
 * @internal True when `connection` died before any reply to the statement it had written (or
 * with nothing written): a session's first statement failing so never began a transaction on the
 * server, and can run again on a fresh connection.
 */
export function lostUnanswered(connection: unknown): boolean {
  return connection instanceof SessionClient && connection.lostUnanswered;
}

interface PgClientInternals {
  _activeQuery: PgActiveQuery | null | undefined;
  _ending: boolean;
  connection: { stream: { destroy(): void } };
  _pulseQueryQueue(): void;
  _handleReadyForQuery(message: unknown): void;
  _handleErrorMessage(message: unknown): void;
  _errorAllQueries(error: Error): void;
  _handleParseComplete(message: unknown): void;
  _handleCommandComplete(message: unknown): void;
  _handleRowDescription(message: unknown): void;
  _handleEmptyQuery(message: unknown): void;
}

interface PgActiveQuery {
  text?: string;
  handleError(error: unknown, connection: unknown): void;
}

interface PgConnection {
  parse(config: { text: string; name: string; types: unknown[] }): void;
  describe(config: { type: 'P' | 'S'; name: string }): void;
  bind(config: { portal: string; statement: string; values: unknown[] }): void;
  execute(config: { portal: string; rows: number }): void;
}

interface PgQuery {
  _results: { command?: string } | Array<{ command?: string }>;
  requiresPreparation(): boolean;
  prepare(connection: PgConnection): void;
  handleReadyForQuery(connection: PgConnection): void;
}

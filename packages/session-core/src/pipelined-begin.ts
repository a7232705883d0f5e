import pg from 'pg';

type Callback = (error: Error | null, result?: unknown) => void;

/**
 * BEGIN and a session's first statement in one extended-protocol pipeline with a single Sync:
 * `Parse/Bind/Execute(BEGIN) Parse/Bind/Describe/Execute(statement) Sync`. PostgreSQL answers
 * both before the one ReadyForQuery, so the pair costs one round trip instead of two. All or
 * nothing: if BEGIN fails, the server skips the statement (everything up to Sync), so it can
 * never run outside the transaction. The caller gets the statement's own result, as if it had
 * been sent alone.
 */
class BeginThenQuery extends (pg.Query as unknown as new (text: string, values: unknown[], callback: Callback) => PgQuery) {
  /** BEGIN for the extended-protocol pipeline; undefined when it is already part of a simple query's text. */
  private readonly begin: string | undefined;

  constructor(begin: string | undefined, text: string, values: unknown[], callback: Callback) {
    super(text, values, callback);
    this.begin = begin;
  }

  override requiresPreparation(): boolean {
    return this.begin !== undefined;
  }

  override prepare(connection: PgConnection): void {
    if (this.begin === undefined) {
      super.prepare(connection);
      return;
    }
    connection.parse({ text: this.begin, name: '', types: [] });
    connection.bind({ portal: '', statement: '', values: [] });
    connection.execute({ portal: '', rows: 0 });
    super.prepare(connection);
  }

  override handleReadyForQuery(connection: PgConnection): void {
    // the BEGIN's CommandComplete made pg collect two results: answer with the statement's
    const results = this._results;
    if (Array.isArray(results) && results[0]?.command === 'BEGIN') {
      results.shift();
      this._results = results.length === 1 ? results[0] : results;
    }
    super.handleReadyForQuery(connection);
  }
}

/**
 * The `pg.Client` sessions run on. It listens for `error` from construction (a backend killed
 * while connecting must not crash the process) and can send a pending BEGIN in front of the next
 * statement (see `BeginThenQuery`): only `sendWithBegin` below sets it.
 */
export class SessionClient extends pg.Client {
  /** @internal BEGIN to send with the next statement; consumed by the next `query()`. */
  beginWithNext: string | undefined;

  constructor(config?: string | pg.ClientConfig) {
    super(config);
    this.on('error', () => {
      (this as { _invalid?: boolean })._invalid = true;
    });
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

  private queryAfterBegin(begin: string, config: unknown, values: unknown, callback: Callback): void {
    if (typeof config === 'string') {
      const params = Array.isArray(values) ? values : [];
      // with parameters: one extended-protocol pipeline; without: one simple query `BEGIN; <text>`
      // (PostgreSQL runs a multi-statement simple query all or nothing up to the failing statement)
      const text = params.length > 0 ? config : `${begin}; ${config}`;
      super.query(new BeginThenQuery(params.length > 0 ? begin : undefined, text, params, callback) as unknown as pg.QueryConfig);
      return;
    }
    // a query object: BEGIN on its own first
    super.query(begin, (error: Error | null) => {
      if (error) callback(error);
      else (super.query as (c: unknown, v: unknown, cb: Callback) => void).call(this, config, values, callback);
    });
  }
}

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
export async function sendWithBegin<T>(connection: pg.Client, begin: string, task: () => Promise<T>): Promise<BegunStatement<T>> {
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
    outcome.begun = consumed && (await settledStatus(connection)) !== 'I';
    return outcome;
  }
  await connection.query(begin);
  try {
    return { begun: true, result: await task(), failed: false };
  } catch (error) {
    return { begun: true, error, failed: true };
  }
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
  const read = (connection as { getTransactionStatus?: () => 'I' | 'T' | 'E' | null }).getTransactionStatus;
  return typeof read === 'function' ? read.call(connection) : null;
}

interface PgConnection {
  parse(config: { text: string; name: string; types: unknown[] }): void;
  bind(config: { portal: string; statement: string; values: unknown[] }): void;
  execute(config: { portal: string; rows: number }): void;
}

interface PgQuery {
  _results: { command?: string } | Array<{ command?: string }>;
  requiresPreparation(): boolean;
  prepare(connection: PgConnection): void;
  handleReadyForQuery(connection: PgConnection): void;
}

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
  private readonly begin: string;

  constructor(begin: string, text: string, values: unknown[], callback: Callback) {
    super(text, values, callback);
    this.begin = begin;
  }

  override requiresPreparation(): boolean {
    return true;
  }

  override prepare(connection: PgConnection): void {
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
 * while connecting must not crash the process) and can send a pending BEGIN in the same
 * pipeline as the next parameterised statement (see `BeginThenQuery`).
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
    if (typeof config === 'string' && Array.isArray(values) && values.length > 0) {
      super.query(new BeginThenQuery(begin, config, values, callback) as unknown as pg.QueryConfig);
      return;
    }
    // anything else (no parameters: possibly several statements in one simple query) waits for BEGIN
    super.query(begin, (error: Error | null) => {
      if (error) callback(error);
      else super.query(config as string, values as unknown[], callback);
    });
  }
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

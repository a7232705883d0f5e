import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { DataTypes } from 'sequelize';
import { type AdapterName, type RunningApp, KEY_HEADER, RID_HEADER, startApp } from './frameworks.js';
import { emptyTrace, type Models, type RunRecord, type Trace, within } from './interpreter.js';
import type { Program } from './program.js';

const SCHEMA = `
CREATE TABLE fz_marks (id serial PRIMARY KEY, rid text NOT NULL, seq int NOT NULL, sess text DEFAULT current_setting('fuzz.rid', true));
CREATE TABLE fz_keys (id serial PRIMARY KEY, key text NOT NULL UNIQUE, rid text NOT NULL, seq int NOT NULL, sess text DEFAULT current_setting('fuzz.rid', true));
CREATE TABLE fz_deferred (k int NOT NULL, CONSTRAINT fz_deferred_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
INSERT INTO fz_deferred (k) VALUES (0);
INSERT INTO fz_keys (key, rid, seq) VALUES ('seed', 'seed', 0);
`;

/** What the client saw. */
export type ClientResult = { kind: 'response'; status: number; headers: http.IncomingHttpHeaders; body: string; complete: boolean } | { kind: 'aborted' } | { kind: 'error'; message: string };

/** A row of the request found by the observer. */
export interface Row {
  table: 'fz_marks' | 'fz_keys';
  rid: string;
  seq: number;
  sess: string | null;
}

/** Everything observed about one program run on one adapter. */
export interface Observation {
  adapter: AdapterName;
  rid: string;
  program: Program;
  trace: Trace;
  client: ClientResult;
  twin?: ClientResult;
  twinRid: string;
  rows: Row[];
  twinRows: Row[];
  settled: boolean;
  backgroundSettled: boolean;
  pool: { inUse: number; idleInTransaction: number };
  uncaught: string[];
}

/** Uncaught exceptions and unhandled rejections of the whole process (the servers run in it). */
export const uncaught: string[] = [];
let recording = false;
/** Install the process-wide recorders (once). */
export function recordUncaught(): void {
  if (recording) return;
  recording = true;
  process.on('uncaughtException', (error) => uncaught.push(`uncaughtException: ${describe(error)}`));
  process.on('unhandledRejection', (reason) => uncaught.push(`unhandledRejection: ${describe(reason)}`));
}
function describe(error: unknown): string {
  return error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}\n${error.stack?.split('\n').slice(1, 6).join('\n')}` : String(error);
}

/** One adapter's app, database, engine and observer connection. */
export class AdapterHarness {
  readonly runs = new Map<string, RunRecord>();
  private db!: TestDatabase;
  private observer!: pg.Client;
  engine!: Engine;
  private app!: RunningApp;
  private counter = 0;

  constructor(readonly adapter: AdapterName) {}

  async start(): Promise<void> {
    this.db = await createTestDatabase(`sl_fuzz_${this.adapter}`);
    this.observer = new pg.Client({ connectionString: this.db.url });
    await this.observer.connect();
    await this.observer.query(SCHEMA);
    this.engine = createEngine(this.db.url, { pool: { max: 5, acquireTimeoutMs: 5000 } });
    const sequelize = this.engine.sequelize;
    const Mark = sequelize.define('Mark', { rid: { type: DataTypes.STRING, allowNull: false }, seq: { type: DataTypes.INTEGER, allowNull: false } }, { tableName: 'fz_marks', timestamps: false });
    const Key = sequelize.define(
      'Key',
      { key: { type: DataTypes.STRING, allowNull: false, unique: true }, rid: { type: DataTypes.STRING, allowNull: false }, seq: { type: DataTypes.INTEGER, allowNull: false } },
      { tableName: 'fz_keys', timestamps: false },
    );
    const models: Models = { sequelize, factory: sessionmaker(this.engine), Mark, Key };
    this.app = await startApp(this.adapter, { models, runs: this.runs });
  }

  async stop(): Promise<void> {
    await this.app?.close();
    await this.engine?.dispose({ timeoutMs: 1000 });
    await this.observer?.end();
    await this.db?.drop();
  }

  /** Run one program over HTTP and observe everything the oracle needs. */
  async run(program: Program): Promise<Observation> {
    const rid = `${this.adapter[0]}${++this.counter}-${randomBytes(3).toString('hex')}`;
    const twinRid = `${rid}-twin`;
    const uncaughtBefore = uncaught.length;
    let markSettled!: () => void;
    const settled = new Promise<void>((resolve) => (markSettled = resolve));
    let endRequest!: () => void;
    const ended = new Promise<void>((resolve) => (endRequest = resolve));
    const arrivals = new Map<string, { count: number; go: () => void; gate: Promise<void> }>();
    let twinResult: Promise<ClientResult> | undefined;
    const path = program.finish === 'after-response' ? '/run-after' : '/run';
    const main = send(this.app.url, path, { [RID_HEADER]: rid });
    const rec: RunRecord = {
      rid,
      program,
      trace: emptyTrace(),
      background: [],
      settled,
      markSettled,
      ended,
      abortClient: () => main.abort(),
      startTwin: (key) => {
        twinResult = send(this.app.url, '/twin', { [RID_HEADER]: twinRid, [KEY_HEADER]: key }).result;
      },
      barrier: (key) => {
        let entry = arrivals.get(key);
        if (!entry) {
          let go!: () => void;
          const gate = new Promise<void>((resolve) => (go = resolve));
          entry = { count: 0, go, gate };
          arrivals.set(key, entry);
          setTimeout(go, 1000).unref();
        }
        if (++entry.count >= 2) entry.go();
        return entry.gate;
      },
      seq: 0,
      savepointIds: 0,
    };
    this.runs.set(rid, rec);
    const client = await main.result;
    const isSettled = await within(settled, 5000);
    endRequest();
    const twin = twinResult ? await twinResult : undefined;
    // background work may register more background work (a stream, a listener): wait in rounds
    let backgroundSettled = true;
    for (let seen = 0; seen < rec.background.length; ) {
      const batch = rec.background.slice(seen);
      seen = rec.background.length;
      if (!(await within(Promise.all(batch), 3000))) backgroundSettled = false;
    }
    const pool = await this.settle();
    const { rows } = await this.observer.query<Row & { table: Row['table'] }>(
      `SELECT 'fz_marks' AS table, rid, seq, sess FROM fz_marks WHERE rid = $1 OR rid = $2
       UNION ALL SELECT 'fz_keys', rid, seq, sess FROM fz_keys WHERE rid = $1 OR rid = $2`,
      [rid, twinRid],
    );
    this.runs.delete(rid);
    return {
      adapter: this.adapter,
      rid,
      program,
      trace: rec.trace,
      client,
      twin,
      twinRid,
      rows: rows.filter((r) => r.rid === rid),
      twinRows: rows.filter((r) => r.rid === twinRid),
      settled: isSettled,
      backgroundSettled,
      pool,
      uncaught: uncaught.slice(uncaughtBefore),
    };
  }

  /** Poll (up to 2 s) until no connection is in use and no backend is idle in transaction. */
  private async settle(): Promise<{ inUse: number; idleInTransaction: number }> {
    const deadline = Date.now() + 2000;
    for (;;) {
      const inUse = this.engine.stats().pool.inUse;
      const { rows } = await this.observer.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`,
      );
      const idleInTransaction = rows[0]!.n;
      if ((inUse === 0 && idleInTransaction === 0) || Date.now() > deadline) return { inUse, idleInTransaction };
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A POST over a fresh connection; `abort()` destroys it (the client goes away). */
function send(url: string, path: string, headers: Record<string, string>): { result: Promise<ClientResult>; abort(): void } {
  const payload = JSON.stringify({ hello: 'fuzz' });
  let aborted = false;
  const req = http.request(`${url}${path}`, {
    method: 'POST',
    agent: false,
    headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) },
  });
  const result = new Promise<ClientResult>((resolve) => {
    const timer = setTimeout(() => {
      req.destroy();
      resolve({ kind: 'error', message: 'no complete response within 10 s' });
    }, 10_000);
    const done = (r: ClientResult) => {
      clearTimeout(timer);
      resolve(aborted ? { kind: 'aborted' } : r);
    };
    req.on('error', (error) => done({ kind: 'error', message: `${(error as NodeJS.ErrnoException).code ?? ''} ${error.message}` }));
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => undefined);
      res.on('close', () => done({ kind: 'response', status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), complete: res.complete }));
    });
  });
  req.end(payload);
  return {
    result,
    abort: () => {
      aborted = true;
      req.destroy();
    },
  };
}

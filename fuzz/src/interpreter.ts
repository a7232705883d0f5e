import type { ServerResponse } from 'node:http';
import { SessionLocalError, type Session, type SessionFactory } from '@sessionlocal/session-core';
import type { ModelStatic, Model, Sequelize } from 'sequelize';
import type { Program, SimpleStep, Step } from './program.js';

/** The models and handles a program uses (one set per adapter's engine). */
export interface Models {
  sequelize: Sequelize;
  factory: SessionFactory;
  Mark: ModelStatic<Model>;
  Key: ModelStatic<Model>;
}

/** One attempted write of the request, and where it ran by the program's own account. */
export interface WriteRecord {
  seq: number;
  table: 'fz_marks' | 'fz_keys';
  /** Index of the explicit unit (bumped by `db.commit()` / `db.close()`). */
  unit: number;
  /** The nested units (savepoints) it ran in. */
  savepoints: number[];
  ok: boolean;
  autocommit: boolean;
  /** The same unit also got a write that breaks the deferred constraint. */
  failsAtCommit: boolean;
  /** Ran in a timer / `finish` listener / stream, not in the handler's own flow. */
  background: boolean;
  /** A raced `findOrCreate`'s row: whether this request or its twin created it is timing. */
  raced?: boolean;
}

/** An error a step got (deliberate failures included). */
export interface StepError {
  at: string;
  cls: string;
  message: string;
}

/** How an explicit unit ended; `response`: the response ended the request's session (Express, Fastify; Koa's raw `ctx.res` writes). */
export type UnitEnd = 'open' | 'commit-ok' | 'commit-failed' | 'closed' | 'close-failed' | 'response';

/** What the handler did and saw, as recorded while it ran. */
export interface Trace {
  writes: WriteRecord[];
  errors: StepError[];
  units: UnitEnd[];
  /** The unit the response ended (`finish: 'before-response'` routes whose response is sent at the respond call). */
  responseUnit: number | undefined;
  doomedSavepoints: number[];
  /** Units that got a write breaking the deferred constraint (outside a rolled-back savepoint). */
  failsAtCommitUnits: number[];
  responded: boolean;
  threw: 'no' | 'before-respond' | 'after-respond';
  aborted: boolean;
  hangs: string[];
  /** `SessionLocal.currentOrUndefined()` in a timer after the request ended. */
  currentInTimer: boolean[];
  /** A db.commit()/db.close() after responding on an 'after-response' route raced the COMMIT that 'finish' starts: either outcome is right. */
  racedFinish: boolean;
}

/** The per-request record shared by the harness and the handler (looked up by the `x-fuzz-rid` header). */
export interface RunRecord {
  rid: string;
  program: Program;
  trace: Trace;
  /** Work still running on its own (timers, listeners, stream producers); the harness waits for it. */
  background: Promise<unknown>[];
  /** Resolves when the handler settled. */
  settled: Promise<void>;
  markSettled(): void;
  /** Resolves when the request is over (response read or client gone, handler settled). */
  ended: Promise<void>;
  /** Ask the client to go away now. */
  abortClient(): void;
  /** Send the twin request that races `findOrCreate` on `key`. */
  startTwin(key: string): void;
  /** Both racers wait here, then go (at most 1 s). */
  barrier(key: string): Promise<void>;
  seq: number;
  savepointIds: number;
}

/** The framework-specific way to answer, one per adapter (see frameworks.ts). */
export interface Io {
  db: Session;
  /** Node's response (`res`, `ctx.res`, `reply.raw`). */
  raw: ServerResponse;
  json(status: number, body: unknown): void;
  hijack(status: number, body: unknown): void;
  /** The respond call itself sends (Express, Fastify; Koa only for raw writes): it ends a `'before-response'` session. */
  sendsAt(style: 'json' | 'stream' | 'hijack'): boolean;
  /** Stream `chunks()`; resolves when the handler's part is done (Express: all written; Koa/Fastify: the body is set, the producer runs in `background`). */
  stream(status: number, chunks: () => AsyncGenerator<Buffer>): Promise<void>;
}

/** A deliberate error thrown inside a nested unit to undo it (always caught by the program). */
export class Oops extends Error {}
/** The deliberate handler error of a `throw` ending. */
export class Boom extends Error {}

export const CHUNK = Buffer.alloc(32 * 1024, 'x');
export const CHUNKS = 3;

/** A short stable name for an error's kind. */
export function classify(error: unknown): string {
  if (error instanceof SessionLocalError) return error.code;
  if (error instanceof Oops) return 'Oops';
  if (error instanceof Boom) return 'Boom';
  if (error && typeof error === 'object') {
    const e = error as { name?: unknown; code?: unknown };
    if (typeof e.name === 'string' && e.name.startsWith('Sequelize')) return e.name;
    if (typeof e.code === 'string') return e.code;
    if (typeof e.name === 'string') return e.name;
  }
  return typeof error;
}

export function emptyTrace(): Trace {
  return {
    writes: [],
    errors: [],
    units: ['open'],
    responseUnit: undefined,
    doomedSavepoints: [],
    failsAtCommitUnits: [],
    responded: false,
    threw: 'no',
    aborted: false,
    hangs: [],
    currentInTimer: [],
    racedFinish: false,
  };
}

/** Resolves with `true` when `promise` settled within `ms`, `false` otherwise. */
export function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false))),
  ]).finally(() => clearTimeout(timer));
}

const recorded = new WeakSet<object>();

/** Run a handler program; throws to the framework when the program throws (or rethrows). */
export async function runProgram(rec: RunRecord, io: Io, models: Models): Promise<void> {
  const { program, trace } = rec;
  const { Mark, Key, sequelize } = models;
  const savepoints: number[] = [];
  const unit = () => trace.units.length - 1;

  const record = (at: string, error: unknown) => {
    if (error && typeof error === 'object') {
      if (recorded.has(error)) return;
      recorded.add(error);
    }
    trace.errors.push({ at, cls: classify(error), message: error instanceof Error ? error.message.slice(0, 200) : String(error) });
  };
  /** An unexpected error of a step: record it; rethrow it when the program propagates errors. */
  const guard = async (at: string, fn: () => Promise<unknown>): Promise<void> => {
    try {
      await fn();
    } catch (error) {
      record(at, error);
      if (program.onError === 'propagate') throw error;
    }
  };
  const write = (table: WriteRecord['table'], extra: Partial<WriteRecord> = {}): WriteRecord => {
    const w: WriteRecord = { seq: ++rec.seq, table, unit: unit(), savepoints: [...savepoints], ok: false, autocommit: false, failsAtCommit: false, background: false, ...extra };
    trace.writes.push(w);
    return w;
  };
  const insertMark = async (extra: Partial<WriteRecord> = {}) => {
    const w = write('fz_marks', extra);
    await Mark.create({ rid: rec.rid, seq: w.seq }, w.autocommit ? { transaction: null } : {});
    w.ok = true;
  };
  /** Work that runs on its own: errors are recorded, never thrown; the harness waits for it. */
  const background = (at: string, start: (done: () => void) => void) => {
    let resolve!: () => void;
    rec.background.push(new Promise<void>((r) => (resolve = r)));
    start(resolve);
    return async (fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (error) {
        record(at, error);
      }
    };
  };

  const simple = async (step: SimpleStep, at: string): Promise<void> => {
    switch (step.kind) {
      case 'query':
        return guard(at, () => Mark.count());
      case 'insert':
        return guard(at, () => insertMark());
      case 'insertAutocommit':
        return guard(at, () => insertMark({ autocommit: true }));
      case 'insertFailsAtCommit':
        return guard(at, async () => {
          await insertMark();
          await sequelize.query('INSERT INTO fz_deferred (k) VALUES (0)');
          trace.writes.at(-1)!.failsAtCommit = true;
          if (savepoints.length === 0) trace.failsAtCommitUnits.push(unit());
          else pendingDeferred.push({ unit: unit(), savepoints: [...savepoints] });
        });
      case 'failCaught':
        try {
          if (step.fail === 'server') await sequelize.query('SELECT 1/0');
          else if (step.fail === 'js') await sequelize.query('SELECT :missing', { replacements: {} });
          else await Key.create({ key: 'seed', rid: rec.rid, seq: ++rec.seq }, { ignoreDuplicates: true });
        } catch (error) {
          record(`${at} (deliberate ${step.fail} failure)`, error);
        }
        return;
    }
  };
  // deferred-constraint writes inside savepoints: they doom the unit unless a savepoint around them rolls back
  const pendingDeferred: Array<{ unit: number; savepoints: number[] }> = [];

  const nestedUnit = async (at: string, body: () => Promise<void>): Promise<void> => {
    const id = ++rec.savepointIds;
    savepoints.push(id);
    try {
      await sequelize.transaction(async () => {
        await body();
      });
    } catch (error) {
      trace.doomedSavepoints.push(id);
      if (!(error instanceof Oops)) {
        record(at, error);
        if (program.onError === 'propagate') throw error;
      }
    } finally {
      savepoints.pop();
    }
  };

  /** After responding on a `finish: 'after-response'` route, the session ends when the response finishes: by design a race. */
  const racesFinish = () => sent && program.finish === 'after-response';
  let sent = false;

  const step = async (s: Step, at: string): Promise<void> => {
    switch (s.kind) {
      case 'query':
      case 'insert':
      case 'insertAutocommit':
      case 'insertFailsAtCommit':
      case 'failCaught':
        return simple(s, at);
      case 'nested':
        return nestedUnit(at, async () => {
          for (const [i, inner] of s.body.entries()) await simple(inner, `${at}.body[${i}]`);
          if (s.throws) throw new Oops('undo this unit');
        });
      case 'nestedParallel': {
        const first = ++rec.savepointIds;
        const second = ++rec.savepointIds;
        const unitOf = (id: number, throws: boolean) =>
          sequelize.transaction(async () => {
            const w = write('fz_marks', { savepoints: [...savepoints, id] });
            await Mark.create({ rid: rec.rid, seq: w.seq });
            w.ok = true;
            if (throws) throw new Oops('undo the second unit');
          });
        const results = await Promise.allSettled([unitOf(first, false), unitOf(second, true)]);
        trace.doomedSavepoints.push(second);
        if (results[0].status === 'rejected') {
          trace.doomedSavepoints.push(first);
          record(`${at}[0]`, results[0].reason);
        }
        if (results[1].status === 'rejected' && !(results[1].reason instanceof Oops)) record(`${at}[1]`, results[1].reason);
        const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(r.reason instanceof Oops));
        if (failure && program.onError === 'propagate') throw failure.reason;
        return;
      }
      case 'findOrCreate':
        return guard(at, async () => {
          const key = `${s.raced ? 'race' : 'k'}-${rec.rid}-${rec.seq + 1}`;
          const w = write('fz_keys');
          if (s.raced) {
            rec.startTwin(key);
            await rec.barrier(key);
          }
          if (s.raced) w.raced = true;
          const [, created] = await Key.findOrCreate({ where: { key }, defaults: { rid: rec.rid, seq: w.seq } });
          if (created) w.ok = true;
          else trace.writes.splice(trace.writes.indexOf(w), 1);
        });
      case 'commit':
        // the session already ended (the response ended it), or races the COMMIT that 'finish' starts: not a unit of its own
        if (racesFinish()) trace.racedFinish = true;
        if (io.db.state === 'closed' || racesFinish()) return guard(at, () => io.db.commit());
        try {
          await io.db.commit();
          trace.units[unit()] = 'commit-ok';
        } catch (error) {
          trace.units[unit()] = 'commit-failed';
          record(at, error);
          trace.units.push('open');
          if (program.onError === 'propagate') throw error;
          return;
        }
        trace.units.push('open');
        return;
      case 'close':
        if (racesFinish()) trace.racedFinish = true;
        if (io.db.state === 'closed' || racesFinish()) return guard(at, () => io.db.close());
        try {
          await io.db.close();
          trace.units[unit()] = 'closed';
        } catch (error) {
          trace.units[unit()] = 'close-failed';
          record(at, error);
        }
        trace.units.push('open');
        return;
      case 'timer': {
        const run = background('timer', (done) => {
          setTimeout(() => {
            void (async () => {
              await rec.ended;
              trace.currentInTimer.push(models.factory.currentOrUndefined() !== undefined);
              await run(() => insertMark({ background: true }));
              done();
            })();
          }, 0);
        });
        return;
      }
      case 'onFinish': {
        let fired = false;
        const raw = io.raw;
        const run = background('onFinish', (done) => {
          // registered after the response finished: Node never calls it (the program's own doing)
          if (raw.writableFinished || raw.destroyed) return done();
          raw.once('finish', () => {
            fired = true;
            void run(() => insertMark({ background: true })).then(done);
          });
          raw.once('close', () => {
            if (!fired) setTimeout(() => !fired && done(), 50);
          });
        });
        return;
      }
      case 'abort': {
        trace.aborted = true;
        const signal = io.db.signal;
        rec.abortClient();
        if (!signal.aborted) {
          const aborted = new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
          if (!(await within(aborted, 1000))) trace.hangs.push('db.signal did not abort within 1 s of the client leaving');
        }
        return;
      }
    }
  };

  const respond = async (at: string) => {
    if (program.ending.kind !== 'respond') return;
    const r = program.ending.respond;
    const body = { ok: true, rid: rec.rid };
    if (r.style === 'json') io.json(r.status, body);
    else if (r.style === 'hijack') io.hijack(r.status, body);
    else {
      const runQuery = background('stream', (done) => done());
      await io.stream(r.status, async function* chunks() {
        for (let i = 0; i < CHUNKS; i++) {
          if (i > 0 && r.streamQueries) await runQuery(() => Mark.count());
          yield CHUNK;
        }
      });
    }
    void at;
  };

  try {
    for (const [i, s] of program.steps.entries()) await step(s, `steps[${i}]`);
    if (program.ending.kind === 'throw') throw new Boom('boom');
    const { respond: r, after, thenThrow } = program.ending;
    trace.responded = true;
    sent = io.sendsAt(r.style);
    if (program.finish === 'before-response' && sent) {
      trace.responseUnit = unit();
      trace.units[unit()] = 'response';
      trace.units.push('open');
    }
    try {
      await respond('respond');
    } catch (error) {
      record('respond', error);
      throw error;
    }
    if (r.twice) {
      try {
        await respond('respond#2');
      } catch (error) {
        record('respond#2', error);
        if (program.onError === 'propagate') throw error;
      }
    }
    for (const [i, s] of after.entries()) await step(s, `after[${i}]`);
    if (thenThrow) throw new Boom('boom after responding');
  } catch (error) {
    trace.threw = trace.responded ? 'after-respond' : 'before-respond';
    throw error;
  } finally {
    for (const d of pendingDeferred) if (!d.savepoints.some((id) => trace.doomedSavepoints.includes(id))) trace.failsAtCommitUnits.push(d.unit);
    rec.markSettled();
  }
}

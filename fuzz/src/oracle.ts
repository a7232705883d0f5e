import { type AdapterName, ERROR_HANDLER_HEADER, parityOf } from './frameworks.js';
import type { Observation } from './harness.js';
import { CHUNK, CHUNKS, type WriteRecord } from './interpreter.js';

/** One broken invariant: `rule` is stable (it names the check), `detail` says what was seen. */
export interface Violation {
  invariant: 1 | 2 | 3 | 4 | 5;
  rule: string;
  adapter: AdapterName | 'parity';
  detail: string;
}

/** committed / rolled back / nothing written, or (a violation on its own) partly committed. */
export type Outcome = 'committed' | 'rolled-back' | 'no-writes' | 'partial';

/** The outcome of the request's last transaction (the writes after the last `db.commit()` / `db.close()`). */
export function lastOutcome(o: Observation): Outcome {
  return unitOutcome(o, requestUnit(o));
}

/** The unit the client's answer speaks of: the one the response ended, else the last one. */
function requestUnit(o: Observation): number {
  return o.trace.responseUnit ?? o.trace.units.length - 1;
}

function live(o: Observation, w: WriteRecord): boolean {
  return w.ok && !w.autocommit && !w.background && !w.savepoints.some((id) => o.trace.doomedSavepoints.includes(id));
}

function present(o: Observation, w: WriteRecord): boolean {
  return o.rows.some((r) => r.table === w.table && r.seq === w.seq);
}

function unitOutcome(o: Observation, unit: number): Outcome {
  const writes = o.trace.writes.filter((w) => w.unit === unit && live(o, w));
  if (writes.length === 0) return 'no-writes';
  const found = writes.filter((w) => present(o, w)).length;
  return found === writes.length ? 'committed' : found === 0 ? 'rolled-back' : 'partial';
}

/** The invariants 1-4 for one adapter's observation. */
export function checkObservation(o: Observation): Violation[] {
  const out: Violation[] = [];
  const v = (invariant: Violation['invariant'], rule: string, detail: string) => out.push({ invariant, rule, adapter: o.adapter, detail });
  const { program, trace, client } = o;
  const outcome = lastOutcome(o);
  const beforeResponse = program.finish === 'before-response';

  // 1. the process is alive; one well-formed response (or the client left); the handler settles
  for (const u of o.uncaught) v(1, 'process: uncaught error', u.split('\n')[0]!);
  if (!o.settled) v(1, 'handler never settled', 'the handler did not settle within 5 s of the response');
  if (!o.backgroundSettled) v(1, 'background work never settled', 'a timer / listener / stream producer did not settle within 3 s');
  for (const hang of trace.hangs) if (!trace.aborted) v(1, `hang: ${hang.split(' (')[0]}`, hang);
  if (!trace.aborted) {
    if (client.kind !== 'response') v(1, 'no well-formed response', `client: ${client.kind === 'error' ? client.message : client.kind}`);
    else if (!client.complete) v(1, 'truncated response', `status ${client.status}, ${client.body.length} body bytes, then the connection closed`);
  }
  const response = client.kind === 'response' && client.complete ? client : undefined;
  const status = response?.status;
  const fromErrorHandler = response?.headers[ERROR_HANDLER_HEADER] === '1';
  const chosen = program.ending.kind === 'respond' ? program.ending.respond : undefined;
  const errorHandlerMayAnswer = trace.threw !== 'no' || trace.errors.some((e) => e.at.startsWith('respond'));
  if (response && chosen && !fromErrorHandler && status! < 300 && status !== chosen.status && !(errorHandlerMayAnswer && status === program.errorStatus)) {
    v(1, 'invented 2xx status', `client got ${status}, the handler chose ${chosen.status}`);
  }
  if (response && chosen?.style === 'stream' && !fromErrorHandler && status === chosen.status && status < 300 && response.body.length !== CHUNK.length * CHUNKS) {
    v(1, 'short 2xx stream', `a ${status} stream of ${response.body.length} bytes (${JSON.stringify(response.body.slice(0, 80))}), expected ${CHUNK.length * CHUNKS}`);
  }

  // 2. a 2xx only if the last transaction committed; a committed request never answers 5xx; a throw, a 4xx, an abort roll back
  if (outcome === 'partial') v(2, 'partial commit', 'some live writes of the last transaction are in the database, some are not');
  const lastUnit = requestUnit(o);
  for (let unit = 0; unit < trace.units.length; unit++) {
    if (unit === lastUnit) continue;
    const got = unitOutcome(o, unit);
    const end = trace.units[unit];
    if (trace.responseUnit !== undefined && unit > trace.responseUnit && got !== 'no-writes' && got !== 'rolled-back') {
      v(4, 'statement after the session ended was saved', `a write after the response (unit ${unit}, ${end}) is in the database`);
    }
    if (got === 'partial') v(2, 'partial commit of an explicit unit', `unit ${unit} (${end})`);
    if (end === 'commit-ok' && got === 'rolled-back') v(2, 'db.commit() resolved but nothing saved', `unit ${unit}`);
    if ((end === 'commit-failed' || end === 'closed') && got === 'committed') v(2, `${end === 'closed' ? 'db.close()' : 'failed db.commit()'} but saved`, `unit ${unit}`);
  }
  if (trace.failsAtCommitUnits.includes(lastUnit) && outcome === 'committed') v(2, 'deferred-constraint violation committed', 'the last unit broke a deferred constraint yet its rows are saved');
  const threwFirst = trace.threw === 'before-respond';
  if (beforeResponse && response && status! >= 200 && status! < 300 && !fromErrorHandler && (outcome === 'rolled-back' || (outcome === 'no-writes' && trace.failsAtCommitUnits.includes(lastUnit)))) {
    v(2, '2xx without commit', `client got ${status}, the last transaction rolled back`);
  }
  if (outcome === 'committed' && response && status! >= 500) v(2, 'committed but 5xx', `client got ${status} (${response.body.slice(0, 120)}), the last transaction committed`);
  if (threwFirst && outcome === 'committed') v(2, 'handler threw but committed', `the handler threw before responding; error handler answered ${status ?? client.kind}`);
  if (chosen && chosen.status >= 400 && !threwFirst && outcome === 'committed' && !trace.racedFinish)
    v(2, '4xx but committed', `the handler answered ${chosen.status}, the last transaction committed`);
  if (trace.aborted && outcome === 'committed') v(2, 'client aborted but committed', 'the client left before the response; the last transaction committed');
  if (o.twin) {
    if (o.twin.kind !== 'response' || !o.twin.complete) v(1, 'twin: no well-formed response', JSON.stringify(o.twin).slice(0, 160));
    else if (o.twin.status !== 200) v(2, 'raced findOrCreate: twin not 200', `twin got ${o.twin.status}: ${o.twin.body.slice(0, 160)}`);
    else if (JSON.parse(o.twin.body).created === true && o.twinRows.length === 0) v(2, 'twin 2xx without commit', 'the twin answered created: true but its row is missing');
  }

  // 3. the pool is back to 0 and no backend is idle in transaction
  if (o.pool.inUse !== 0) v(3, 'pool not released', `engine.stats().pool.inUse = ${o.pool.inUse} 2 s after the request`);
  if (o.pool.idleInTransaction !== 0) v(3, 'idle in transaction', `${o.pool.idleInTransaction} backend(s) idle in transaction 2 s after the request`);

  // 4. no statement of the request ran outside its session unless asked
  for (const row of o.rows) {
    const w = trace.writes.find((x) => x.table === row.table && x.seq === row.seq);
    if (w?.autocommit) {
      if (row.sess === o.rid) v(4, 'transaction: null ran in the session', `write #${row.seq}`);
      continue;
    }
    if (row.sess !== o.rid) v(4, 'statement ran outside its session', `write #${row.seq} (${w?.background ? 'background' : 'handler'}) ran with fuzz.rid = ${JSON.stringify(row.sess)}`);
    else if (w?.background && beforeResponse) v(4, 'statement after the session ended was saved', `background write #${row.seq} is in the database`);
    if (w && !w.ok && !w.background) v(4, 'a write that threw was saved', `write #${row.seq}`);
  }
  for (const row of o.twinRows) if (row.sess !== o.twinRid) v(4, 'twin statement ran outside its session', `fuzz.rid = ${JSON.stringify(row.sess)}`);
  if (trace.currentInTimer.some(Boolean)) v(4, 'closed session still current in a timer', 'SessionLocal.currentOrUndefined() returned a session in a timer after the request ended');
  return out;
}

/** The outcome class compared across adapters: the last transaction's outcome and the errors the handler got. */
export function outcomeClass(o: Observation, afterRespond: boolean, errorsOnly = false): string {
  // sorted: concurrent branches (a stream's reads, work after responding) may fail in any order
  const errors = o.trace.errors
    // a stream's own reads are left out: where the framework stops a stream body it pipes (Koa,
    // Fastify) after a failed COMMIT differs from where an Express handler writing it stops
    // and so is a 'finish' listener registered after responding: whether it still fires is how soon the framework flushed
    .filter((e) => (afterRespond || !e.at.startsWith('after')) && !e.at.startsWith('respond') && !e.at.startsWith('stream') && !e.at.startsWith('onFinish'))
    .map((e) => `${e.at}: ${e.cls}`)
    .sort();
  return JSON.stringify(errorsOnly ? { errors } : { outcome: lastOutcome(o), errors });
}

/** Whether any write of the request that was not asked to autocommit is in the database. */
/** Whether a write of the request is in the database; `raced` rows left out (which of the twins created one is timing). */
function savedAnything(o: Observation, ignoreRaced = false): boolean {
  return o.trace.writes.some((w) => !(ignoreRaced && w.raced) && live(o, w) && present(o, w));
}

/** Invariant 5: the adapters that can express the program give the same outcome class. */
export function checkParity(observations: Observation[]): Violation[] {
  if (observations.length < 2) return [];
  const { adapters, afterRespond } = parityOf(observations[0]!.program);
  const compared = observations.filter((o) => adapters.includes(o.adapter));
  // when the client leaves, which statement the abort interrupts is timing: compare whether anything was saved
  const aborted = compared.some((o) => o.trace.aborted);
  // which of two raced findOrCreate requests creates the row is timing: compare the errors only
  const raced = JSON.stringify(observations[0]!.program).includes('"raced":true');
  // answering twice is the framework's own behaviour (Express throws ERR_HTTP_HEADERS_SENT to the
  // handler, Fastify only logs): what the handler did next differs; compare the outcome only
  const twice = observations[0]!.program.ending.kind === 'respond' && observations[0]!.program.ending.respond.twice;
  const classes = new Map(
    compared.map((o) => [
      o.adapter,
      aborted ? JSON.stringify({ saved: savedAnything(o, raced) }) : raced ? outcomeClass(o, afterRespond, true) : twice ? JSON.stringify({ outcome: lastOutcome(o) }) : outcomeClass(o, afterRespond),
    ]),
  );
  if (new Set(classes.values()).size <= 1) return [];
  const detail = [...classes].map(([adapter, c]) => `${adapter}: ${c}`).join('\n');
  const outcomes = [...new Set(compared.map((o) => `${o.adapter}=${lastOutcome(o)}`))].join(' ');
  const sameOutcome = new Set(compared.map(lastOutcome)).size === 1;
  return [{ invariant: 5, rule: sameOutcome ? 'adapters differ in the errors the handler got' : `adapters differ in outcome`, adapter: 'parity', detail: `${outcomes}\n${detail}` }];
}

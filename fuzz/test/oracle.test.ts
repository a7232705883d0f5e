import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Observation } from '../src/harness.js';
import { emptyTrace } from '../src/interpreter.js';
import { checkObservation, checkParity } from '../src/oracle.js';
import { featuresOf, type Program, programArbitrary, programToCode } from '../src/program.js';

const program: Program = {
  finish: 'before-response',
  onError: 'propagate',
  errorStatus: 500,
  steps: [{ kind: 'insert' }],
  ending: { kind: 'respond', respond: { style: 'json', status: 201, twice: false, streamQueries: false }, after: [], thenThrow: false },
};

function observation(overrides: Partial<Observation> = {}, saved = true): Observation {
  const trace = emptyTrace();
  trace.writes.push({ seq: 1, table: 'fz_marks', unit: 0, savepoints: [], ok: true, autocommit: false, failsAtCommit: false, background: false });
  trace.responded = true;
  return {
    adapter: 'express',
    rid: 'r1',
    program,
    trace,
    client: { kind: 'response', status: 201, headers: {}, body: '{"ok":true}', complete: true },
    twinRid: 'r1-twin',
    rows: saved ? [{ table: 'fz_marks', rid: 'r1', seq: 1, sess: 'r1' }] : [],
    twinRows: [],
    settled: true,
    backgroundSettled: true,
    pool: { inUse: 0, idleInTransaction: 0 },
    uncaught: [],
    ...overrides,
  };
}

const rules = (o: Observation) => checkObservation(o).map((v) => `${v.invariant} ${v.rule}`);

describe('the oracle', () => {
  it('accepts a 201 whose writes committed', () => {
    expect(rules(observation())).toEqual([]);
  });

  it('flags a 2xx whose last transaction rolled back (invariant 2)', () => {
    expect(rules(observation({}, false))).toEqual(['2 2xx without commit']);
  });

  it('flags a committed request that answered 5xx (invariant 2)', () => {
    expect(rules(observation({ client: { kind: 'response', status: 500, headers: {}, body: '{}', complete: true } }))).toEqual(['2 committed but 5xx']);
  });

  it('flags a truncated response, a held connection, an uncaught error (invariants 1 and 3)', () => {
    const o = observation({ client: { kind: 'response', status: 201, headers: {}, body: '', complete: false }, pool: { inUse: 1, idleInTransaction: 1 }, uncaught: ['uncaughtException: boom'] });
    expect(rules(o)).toEqual(['1 process: uncaught error', '1 truncated response', '3 pool not released', '3 idle in transaction']);
  });

  it('flags a statement that ran outside its session (invariant 4)', () => {
    const o = observation();
    o.rows[0]!.sess = '';
    expect(rules(o)).toEqual(['4 statement ran outside its session']);
  });

  it('flags adapters that disagree on the outcome (invariant 5)', () => {
    const parity = checkParity([observation(), observation({ adapter: 'koa' }, false), observation({ adapter: 'fastify' })]);
    expect(parity.map((v) => v.rule)).toEqual(['adapters differ in outcome']);
  });
});

describe('the program generator', () => {
  it('is reproducible from its seed and prints programs as code', () => {
    const a = fc.sample(programArbitrary(), { seed: 42, numRuns: 20 });
    const b = fc.sample(programArbitrary(), { seed: 42, numRuns: 20 });
    expect(a).toEqual(b);
    expect(programToCode(program)).toContain('await Mark.create({ rid, seq });');
  });

  it('never generates a switched-off feature', () => {
    const off = new Set(['hijack', 'close', 'respond-twice'] as const);
    for (const p of fc.sample(programArbitrary(off), { seed: 7, numRuns: 300 })) for (const f of featuresOf(p)) expect(off.has(f as never)).toBe(false);
  });
});

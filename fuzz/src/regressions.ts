import type { Ending, Program, Respond, Step } from './program.js';

/** A shrunk counterexample kept as a named regression: the program and the issue-11 behaviour it breaks. */
export interface Regression {
  name: string;
  behaviour: string;
  /** `false` while it still breaks an invariant on main (the test then expects a violation: `it.fails`). */
  fixed: boolean;
  program: Program;
  /** Runs of a timing-dependent program (any run's violation counts). */
  repeat?: number;
}

const respond = (style: Respond['style'] = 'json', options: { status?: Respond['status']; after?: Step[]; thenThrow?: boolean; twice?: boolean; streamQueries?: boolean } = {}): Ending => ({
  kind: 'respond',
  respond: { style, status: options.status ?? 200, twice: options.twice ?? false, streamQueries: options.streamQueries ?? false },
  after: options.after ?? [],
  thenThrow: options.thenThrow ?? false,
});
const program = (steps: Step[], ending: Ending, options: Partial<Pick<Program, 'finish' | 'onError' | 'errorStatus'>> = {}): Program => ({
  finish: options.finish ?? 'before-response',
  onError: options.onError ?? 'propagate',
  errorStatus: options.errorStatus ?? 500,
  steps,
  ending,
});
const insert: Step = { kind: 'insert' };
const failsAtCommit: Step = { kind: 'insertFailsAtCommit' };

/** The counterexamples `pnpm fuzz --all` found on main (issue 11), shrunk. Flip `fixed` when the fix lands. */
export const REGRESSIONS: readonly Regression[] = [
  {
    name: 'Express/Fastify: res.json() then a nested transaction: no crash, later statements throw SessionClosedError',
    behaviour: '1, 2',
    fixed: true,
    program: program([insert], respond('json', { after: [{ kind: 'nested', body: [insert], throws: false }] })),
  },
  {
    name: 'Express/Fastify: res.json(x); throw: one well-formed response consistent with the commit',
    behaviour: '1, 2',
    fixed: true,
    program: program([insert], respond('json', { thenThrow: true })),
  },
  {
    name: 'Fastify: reply.send() after a write that fails at COMMIT, then throw: no unhandled rejection',
    behaviour: '2',
    fixed: true,
    program: program([failsAtCommit], respond('json', { thenThrow: true })),
  },
  { name: 'Express: res.json() twice: the second throws to the handler, no crash', behaviour: '1', fixed: true, program: program([insert], respond('json', { twice: true })) },
  { name: 'Koa/Fastify: hijacked response after a write that fails at COMMIT: never a 2xx', behaviour: '8', fixed: true, program: program([failsAtCommit], respond('hijack')) },
  {
    name: 'Koa: ctx.respond = false, raw 200, then throw: never a 2xx for rolled-back work',
    behaviour: '8',
    fixed: true,
    program: program([{ kind: 'nested', body: [insert], throws: false }], respond('hijack', { thenThrow: true })),
  },
  { name: 'Koa/Fastify: a write after a hijacked response is not saved', behaviour: '8', fixed: true, program: program([{ kind: 'query' }], respond('hijack', { after: [failsAtCommit] })) },
  { name: 'Express: a thrown handler error rolls back although the error handler answers 200', behaviour: '13', fixed: true, program: program([insert], { kind: 'throw' }, { errorStatus: 200 }) },
  { name: 'all: currentOrUndefined() is undefined in a timer after the request', behaviour: '18', fixed: true, program: program([], respond('json', { after: [{ kind: 'timer' }] })) },
  { name: "Koa: a res.on('finish') listener's statement throws SessionClosedError, as in Express and Fastify", behaviour: '6', fixed: true, program: program([{ kind: 'onFinish' }], respond('json')) },
  { name: 'Koa: a stream body that queries gets SessionClosedError, as in Express and Fastify', behaviour: '6', fixed: true, program: program([], respond('stream', { streamQueries: true })) },
  { name: "Express: a write()/'drain' stream whose COMMIT fails: the wait ends", behaviour: '9', fixed: true, program: program([failsAtCommit], respond('stream')) },
  { name: "Express: a write()/'drain' stream after a caught server error: the wait ends", behaviour: '9', fixed: true, program: program([{ kind: 'failCaught', fail: 'server' }], respond('stream')) },
  { name: "Express: db.close() then a write()/'drain' stream: the wait ends", behaviour: '4, 9', fixed: true, program: program([{ kind: 'close' }], respond('stream')) },
  { name: 'Fastify: a stream sent after the client left: no unhandled rejection', behaviour: '2 (new case)', fixed: true, program: program([{ kind: 'abort' }], respond('stream')) },
  {
    // an oracle defect, not the library's: with the client gone the parity check compared "saved
    // anything", and whether this request or its twin created the raced row is timing
    name: 'raced findOrCreate, db.commit(), the client leaves: the adapters agree (who created the raced row is timing)',
    behaviour: '3, 5',
    fixed: true,
    repeat: 4,
    program: program([{ kind: 'findOrCreate', raced: true }, { kind: 'commit' }, { kind: 'abort' }], respond('json')),
  },
  {
    name: 'raced findOrCreate: both requests 200, the session goes on',
    behaviour: '3',
    fixed: true,
    repeat: 4,
    program: program(
      [
        { kind: 'findOrCreate', raced: true },
        { kind: 'nested', body: [insert], throws: false },
      ],
      respond('json'),
    ),
  },
  {
    name: 'db.commit() after the client left does not resolve for work it did not save',
    behaviour: '4, 17 (new case)',
    fixed: true,
    program: program([insert, { kind: 'abort' }, { kind: 'commit' }], { kind: 'throw' }),
  },
  { name: 'Promise.all of two nested units, one throwing: never silently lost work', behaviour: '16', fixed: true, program: program([{ kind: 'nestedParallel' }], respond('hijack')) },
];

import fc from 'fast-check';

/** How a deliberately failing statement fails: on the server (aborts the transaction), in JavaScript before sending, or a conflict `ignoreDuplicates` absorbs. */
export type FailKind = 'server' | 'js' | 'conflict-ignored';

/** Actions that may also run inside a nested `sequelize.transaction(cb)`. */
export type SimpleStep =
  | { kind: 'query' }
  | { kind: 'insert' }
  /** `transaction: null`: the program asks for autocommit, outside its session. */
  | { kind: 'insertAutocommit' }
  /** Breaks a DEFERRABLE INITIALLY DEFERRED unique constraint: only COMMIT fails. */
  | { kind: 'insertFailsAtCommit' }
  /** A failing statement, caught by the handler, which then goes on. */
  | { kind: 'failCaught'; fail: FailKind };

/** One action of a handler program. */
export type Step =
  | SimpleStep
  | { kind: 'nested'; body: SimpleStep[]; throws: boolean }
  /** `Promise.all` of two nested units, the second throwing (behaviour 16). */
  | { kind: 'nestedParallel' }
  /** `findOrCreate` on a fresh key, optionally raced by a twin request on the same key. */
  | { kind: 'findOrCreate'; raced: boolean }
  | { kind: 'commit' }
  | { kind: 'close' }
  /** A `setTimeout` callback that inserts once the request is over. */
  | { kind: 'timer' }
  /** A raw `res.on('finish')` listener that inserts. */
  | { kind: 'onFinish' }
  /** The client goes away here; the handler waits for `db.signal` (up to 1 s) and goes on. */
  | { kind: 'abort' };

export interface Respond {
  /** `json`: the framework's JSON reply; `stream`: a streamed body; `hijack`: raw writes on Node's response. */
  style: 'json' | 'stream' | 'hijack';
  status: 200 | 201 | 400 | 404;
  /** The handler responds a second time right after (same status). */
  twice: boolean;
  /** Stream only: a query between chunks. */
  streamQueries: boolean;
}

export type Ending = { kind: 'respond'; respond: Respond; after: Step[]; thenThrow: boolean } | { kind: 'throw' };

/** A handler program: steps, then a response (possibly followed by more work) or a throw. */
export interface Program {
  finish: 'before-response' | 'after-response';
  /** What the handler does with an unexpected error of a step: rethrow it (to the framework) or record it and go on. */
  onError: 'propagate' | 'catch';
  /** The status the app's error handler answers a thrown error with. */
  errorStatus: 500 | 400 | 200;
  steps: Step[];
  ending: Ending;
}

/** Which generator knobs are switched off (the `KNOWN_BROKEN` features). */
export type Feature =
  | 'failCaught-js'
  | 'failCaught-conflict-ignored'
  | 'findOrCreate'
  | 'findOrCreate-raced'
  | 'nested-throws'
  | 'nestedParallel'
  | 'commit'
  | 'close'
  | 'timer'
  | 'onFinish'
  | 'abort'
  | 'stream'
  | 'stream-queries'
  | 'hijack'
  | 'respond-twice'
  | 'work-after-respond'
  | 'throw-after-respond'
  | 'error-handler-2xx'
  | 'finish-after-response'
  | 'insertAutocommit'
  | 'insertFailsAtCommit';

/** The fast-check arbitrary of handler programs, without the features in `off`. */
export function programArbitrary(off: ReadonlySet<Feature> = new Set()): fc.Arbitrary<Program> {
  const on = (feature: Feature) => !off.has(feature);
  const fails: FailKind[] = ['server', ...(on('failCaught-js') ? (['js'] as const) : []), ...(on('failCaught-conflict-ignored') ? (['conflict-ignored'] as const) : [])];
  const simple: fc.Arbitrary<SimpleStep>[] = [
    fc.constant({ kind: 'query' } as const),
    fc.constant({ kind: 'insert' } as const),
    fc.constantFrom(...fails).map((fail) => ({ kind: 'failCaught', fail }) as const),
  ];
  if (on('insertAutocommit')) simple.push(fc.constant({ kind: 'insertAutocommit' } as const));
  if (on('insertFailsAtCommit')) simple.push(fc.constant({ kind: 'insertFailsAtCommit' } as const));
  const simpleStep = fc.oneof(...simple);
  const nested = fc.record({ kind: fc.constant('nested' as const), body: fc.array(simpleStep, { minLength: 1, maxLength: 3 }), throws: on('nested-throws') ? fc.boolean() : fc.constant(false) });
  const common: fc.Arbitrary<Step> = fc.oneof({ arbitrary: simpleStep as fc.Arbitrary<Step>, weight: 3 }, { arbitrary: nested as fc.Arbitrary<Step>, weight: 1 });
  const optional = (feature: Feature, arbitrary: fc.Arbitrary<Step>) => (on(feature) ? [arbitrary] : []);
  const special: fc.Arbitrary<Step>[] = [
    ...optional('findOrCreate', fc.record({ kind: fc.constant('findOrCreate' as const), raced: on('findOrCreate-raced') ? fc.boolean() : fc.constant(false) })),
    ...optional('nestedParallel', fc.constant({ kind: 'nestedParallel' } as const)),
    ...optional('commit', fc.constant({ kind: 'commit' } as const)),
    ...optional('close', fc.constant({ kind: 'close' } as const)),
    ...optional('timer', fc.constant({ kind: 'timer' } as const)),
    ...optional('onFinish', fc.constant({ kind: 'onFinish' } as const)),
  ];
  const stepOf = (extra: fc.Arbitrary<Step>[]) => (extra.length === 0 ? common : fc.oneof({ arbitrary: common, weight: extra.length * 2 }, ...extra.map((arbitrary) => ({ arbitrary, weight: 1 }))));
  const before = fc.array(stepOf([...special, ...optional('abort', fc.constant({ kind: 'abort' } as const))]), { minLength: 0, maxLength: 5 });
  const after = on('work-after-respond') ? fc.array(stepOf(special), { minLength: 0, maxLength: 3 }) : fc.constant([] as Step[]);
  const styles: Respond['style'][] = ['json', ...(on('stream') ? (['stream'] as const) : []), ...(on('hijack') ? (['hijack'] as const) : [])];
  const respond: fc.Arbitrary<Respond> = fc.record({
    style: fc.constantFrom(...styles),
    status: fc.constantFrom(200, 201, 400, 404),
    twice: on('respond-twice') ? fc.boolean() : fc.constant(false),
    streamQueries: on('stream-queries') ? fc.boolean() : fc.constant(false),
  });
  const ending: fc.Arbitrary<Ending> = fc.oneof(
    { arbitrary: fc.record({ kind: fc.constant('respond' as const), respond, after, thenThrow: on('throw-after-respond') ? fc.boolean() : fc.constant(false) }), weight: 4 },
    { arbitrary: fc.constant({ kind: 'throw' } as const), weight: 1 },
  );
  return fc
    .record({
      finish: on('finish-after-response') ? fc.constantFrom('before-response' as const, 'before-response' as const, 'after-response' as const) : fc.constant('before-response' as const),
      onError: fc.constantFrom('propagate' as const, 'catch' as const),
      errorStatus: on('error-handler-2xx') ? fc.constantFrom(500 as const, 400 as const, 200 as const) : fc.constantFrom(500 as const, 400 as const),
      steps: before,
      ending,
    })
    .map(normalize);
}

/** Keep generated programs meaningful: `streamQueries` only on streams, `twice` not on streams. */
function normalize(program: Program): Program {
  if (program.ending.kind !== 'respond') return program;
  const r = program.ending.respond;
  return { ...program, ending: { ...program.ending, respond: { ...r, streamQueries: r.style === 'stream' && r.streamQueries, twice: r.style !== 'stream' && r.twice } } };
}

/** The features a program uses (to tell whether a `KNOWN_BROKEN` entry concerns it). */
export function featuresOf(program: Program): Set<Feature> {
  const found = new Set<Feature>();
  const visit = (step: Step) => {
    if (step.kind === 'failCaught' && step.fail !== 'server') found.add(`failCaught-${step.fail}`);
    if (step.kind === 'nested') {
      if (step.throws) found.add('nested-throws');
      step.body.forEach(visit);
    }
    if (step.kind === 'findOrCreate') found.add(step.raced ? 'findOrCreate-raced' : 'findOrCreate');
    if (['nestedParallel', 'commit', 'close', 'timer', 'onFinish', 'abort', 'insertAutocommit', 'insertFailsAtCommit'].includes(step.kind)) found.add(step.kind as Feature);
  };
  program.steps.forEach(visit);
  if (program.finish === 'after-response') found.add('finish-after-response');
  if (program.errorStatus === 200) found.add('error-handler-2xx');
  if (program.ending.kind === 'respond') {
    const { respond, after, thenThrow } = program.ending;
    after.forEach(visit);
    if (after.length > 0) found.add('work-after-respond');
    if (thenThrow) found.add('throw-after-respond');
    if (respond.twice) found.add('respond-twice');
    if (respond.style !== 'json') found.add(respond.style);
    if (respond.streamQueries) found.add('stream-queries');
  }
  return found;
}

/** A program as readable handler code (framework-neutral; `respond`/`stream`/`hijack` are spelled per framework in frameworks.ts). */
export function programToCode(program: Program): string {
  const lines: string[] = [
    `// route: sessionLocal.route({ finish: '${program.finish}' }); step errors: ${program.onError === 'propagate' ? 'rethrown' : 'caught, handler goes on'}; app error handler answers ${program.errorStatus}`,
    'async function handler(db) {',
  ];
  const say = (indent: string, step: Step) => {
    for (const line of stepCode(step)) lines.push(`${indent}${line}`);
  };
  for (const step of program.steps) say('  ', step);
  if (program.ending.kind === 'throw') {
    lines.push("  throw new Error('boom');");
  } else {
    const { respond, after, thenThrow } = program.ending;
    const call = respondCode(respond);
    lines.push(`  ${call}`);
    if (respond.twice) lines.push(`  ${call} // again`);
    for (const step of after) say('  ', step);
    if (thenThrow) lines.push("  throw new Error('boom after responding');");
  }
  lines.push('}');
  return lines.join('\n');
}

function respondCode(r: Respond): string {
  if (r.style === 'json') return `respond(${r.status}, { ok: true }); // res.status().json() / ctx.body = / reply.code().send()`;
  if (r.style === 'hijack') return `hijack(${r.status}, { ok: true }); // raw res.writeHead+end / ctx.respond = false / reply.hijack()`;
  return `await stream(${r.status}, 3 chunks of 32 KiB${r.streamQueries ? ', await Mark.findOne() between chunks' : ''}); // write()+'drain' / Readable.from(generator)`;
}

function stepCode(step: Step): string[] {
  switch (step.kind) {
    case 'query':
      return ['await Mark.count();'];
    case 'insert':
      return ['await Mark.create({ rid, seq });'];
    case 'insertAutocommit':
      return ['await Mark.create({ rid, seq }, { transaction: null }); // autocommit, asked for'];
    case 'insertFailsAtCommit':
      return ['await Mark.create({ rid, seq }); await Deferred.create({ k: 0 }); // breaks a deferred unique: COMMIT fails'];
    case 'failCaught':
      if (step.fail === 'server') return ["try { await sequelize.query('SELECT 1/0'); } catch {}"];
      if (step.fail === 'js') return ["try { await sequelize.query('SELECT :missing', { replacements: {} }); } catch {}"];
      return ["await Key.create({ key: 'seed', rid, seq }, { ignoreDuplicates: true }); // conflict, ignored"];
    case 'nested':
      return [
        'try {',
        '  await sequelize.transaction(async () => {',
        ...step.body.flatMap(stepCode).map((line) => `    ${line}`),
        ...(step.throws ? ["    throw new Oops('undo this unit');"] : []),
        '  });',
        '} catch (e) { if (!(e instanceof Oops)) throw e; }',
      ];
    case 'nestedParallel':
      return ['await Promise.allSettled([sequelize.transaction(() => Mark.create(...)), sequelize.transaction(async () => { await Mark.create(...); throw new Oops(); })]);'];
    case 'findOrCreate':
      return [`await Key.findOrCreate({ where: { key: fresh }, defaults: { rid, seq } });${step.raced ? ' // a twin request races on the same key' : ''}`];
    case 'commit':
      return ['await db.commit();'];
    case 'close':
      return ['await db.close();'];
    case 'timer':
      return ['setTimeout(async () => { /* after the request */ await Mark.create({ rid, seq }); });'];
    case 'onFinish':
      return ["res.on('finish', async () => { await Mark.create({ rid, seq }); }); // raw Node response"];
    case 'abort':
      return ['// <- the client goes away here; await db.signal abort (<= 1 s)'];
  }
}

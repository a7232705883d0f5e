import { type Feature, featuresOf, type Program } from './program.js';

/** A generator feature (or a combination: all of them in one program) that finds a listed defect. */
export interface KnownBroken {
  features: readonly Feature[];
  /** Issue 11's behaviour number(s). */
  behaviour: string;
  why: string;
}

/**
 * What the bounded run of `pnpm test` (and `pnpm fuzz` without `--all`) does not generate,
 * because it finds a listed defect of issue 11 on current main. A single feature is switched off
 * in the generator; a combination filters out the programs that have all of its features.
 * Delete an entry when its fix lands: `pnpm test` then fuzzes it too.
 */
export const KNOWN_BROKEN: readonly KnownBroken[] = [
  { features: ['work-after-respond'], behaviour: '1, 2', why: 'a query after res.json() / reply.send(): Express crashes (ERR_STREAM_WRITE_AFTER_END), Fastify rejects unhandled (ERR_HTTP_HEADERS_SENT)' },
  { features: ['throw-after-respond'], behaviour: '1, 2', why: 'res.json(); throw: Express crashes and truncates the response; Fastify: unhandled FST_ERR_REP_INVALID_PAYLOAD_TYPE' },
  { features: ['respond-twice'], behaviour: '1', why: 'res.json() twice: ERR_STREAM_WRITE_AFTER_END crashes the process' },
  { features: ['hijack'], behaviour: '8', why: 'Koa ctx.respond = false / Fastify reply.hijack(): 200 although COMMIT failed' },
  { features: ['error-handler-2xx'], behaviour: '13', why: 'Express commits the writes of a handler that threw when the error handler answers 2xx' },
  { features: ['timer'], behaviour: '18', why: 'currentOrUndefined() returns the closed session in a timer after the request' },
  { features: ['onFinish'], behaviour: '6', why: "Koa: a res.on('finish') listener's insert autocommits outside the session" },
  { features: ['stream-queries'], behaviour: '6', why: 'Koa: a stream body that queries runs outside the session (no SessionClosedError)' },
  {
    features: ['stream'],
    behaviour: '9, 4, 2',
    why: "Express: a write()/'drain' stream when COMMIT fails (deferred constraint, poisoned session, db.close() before): 'drain' never comes; Fastify: a stream after the client left: unhandled FST_ERR_REP_INVALID_PAYLOAD_TYPE",
  },
  { features: ['findOrCreate-raced'], behaviour: '3', why: 'raced findOrCreate: the twin gets 500 commit_failed, or the session is poisoned (TRANSACTION_ABORTED on the next statement)' },
  { features: ['abort', 'commit'], behaviour: '4, 17 (new case)', why: 'db.commit() after the client left resolves, yet nothing is saved (the abort rolled the session back at once)' },
  { features: ['nestedParallel'], behaviour: '16', why: "Promise.all of two nested units: Express 'drain' hang, Fastify ERR_HTTP_HEADERS_SENT" },
];

/** The single features `KNOWN_BROKEN` switches off in the generator. */
export function knownBrokenFeatures(): Set<Feature> {
  return new Set(KNOWN_BROKEN.filter((k) => k.features.length === 1).map((k) => k.features[0]!));
}

/** Whether a program has every feature of a `KNOWN_BROKEN` combination. */
export function hitsKnownCombination(program: Program): boolean {
  const found = featuresOf(program);
  return KNOWN_BROKEN.some((k) => k.features.length > 1 && k.features.every((f) => found.has(f)));
}

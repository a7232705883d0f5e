import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaUnavailableError, ReplyTimeoutError, SessionLocalError, sessionmaker, type Engine, type SessionFactory } from '../src/index.js';
import { startFaultProxy, startStreamingReplica, streamingReplicaUnsupported, type FaultProxy, type StreamingReplica } from '../src/testing/index.js';
import { httpErrorFor } from '../src/adapter/index.js';
import { Engines, noneInTransaction, served, sleep, waitFor, waitForState } from './hostile-replica-support.js';

/**
 * Hostile second opinion, generated: many read-only sessions while the replica flaps (fast-check
 * schedules of network faults through the fault proxy and bursts of reads). What must hold
 * whatever the schedule (docs/production.md "Health", "Fallback", semantics rules 13-14):
 * - no read hangs: each settles within the health-check, connect and acquire deadlines;
 * - with `fallback: 'primary'`, a read in a calm period succeeds; any failure is a 503 as the
 *   adapters answer it, or a broken connection, never anything else;
 * - afterwards the replica is up again, reads use it, every pool is back at rest, and no backend
 *   is left idle in transaction on either server.
 */
const unsupported = streamingReplicaUnsupported();
const CHECK_INTERVAL_MS = 200;
const CHECK_TIMEOUT_MS = 600;
const POOL_MAX = 4;
const READ_BOUND_MS = 10_000;

type Step = { kind: 'mode'; mode: 'pass' | 'silent' | 'reset' | 'latency'; ms: number } | { kind: 'reads'; n: number; statements: 1 | 2; sleepMs: number } | { kind: 'wait'; ms: number };

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('mode' as const), mode: fc.constantFrom('pass' as const, 'silent' as const, 'reset' as const, 'latency' as const), ms: fc.integer({ min: 10, max: 150 }) }),
  fc.record({ kind: fc.constant('reads' as const), n: fc.integer({ min: 1, max: 6 }), statements: fc.constantFrom(1 as const, 2 as const), sleepMs: fc.integer({ min: 0, max: 150 }) }),
  fc.record({ kind: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 400 }) }),
);

interface Read {
  statements: 1 | 2;
  start: number;
  end?: number;
  error?: unknown;
  hung?: boolean;
}

/** A 503 as the adapters answer it (httpErrorFor), or a broken connection. */
function acceptableFailure(error: unknown): boolean {
  if (error instanceof ReplicaUnavailableError || error instanceof ReplyTimeoutError) return true;
  if (httpErrorFor(error)?.status === 503) return true;
  if (error instanceof SessionLocalError) return false;
  const text = `${(error as Error)?.name} ${(error as Error)?.message} ${(error as { parent?: Error })?.parent?.message ?? ''}`;
  return /Connection|terminat|ECONNRESET|EPIPE|socket|closed/i.test(text);
}

describe.skipIf(unsupported !== undefined)('hostile: read-only sessions while the replica flaps', () => {
  let pair: StreamingReplica;
  let proxy: FaultProxy;
  let engine: Engine;
  let SessionLocal: SessionFactory;
  const engines = new Engines();

  beforeAll(async () => {
    pair = await startStreamingReplica();
    proxy = await startFaultProxy({ port: pair.standby.port });
    engine = engines.make(pair.primary.url, {
      replicas: [proxy.url(pair.standby.url)],
      pool: { max: POOL_MAX, acquireTimeoutMs: 3_000 },
      connectTimeoutMs: 1_500,
      // without a server timeout no reply deadline is derived: a statement whose bytes a silence dropped would wait for TCP
      replyTimeoutMs: 2_500,
      replicaOptions: { checkIntervalMs: CHECK_INTERVAL_MS, checkTimeoutMs: CHECK_TIMEOUT_MS, onStateChange: () => {} },
    });
    SessionLocal = sessionmaker(engine, { readOnly: true });
    await engine.ping({ replicas: true });
    await waitForState(engine, 'up');
  }, 120_000);
  afterAll(async () => {
    await engines.disposeAll();
    await proxy?.close();
    await pair?.stop();
  });

  it('no hang, only 503s, calm reads succeed, and everything back at rest (generated schedules)', async () => {
    const report: string[] = [];
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 4, maxLength: 12 }), async (schedule) => {
        const faults: Array<{ t: number; kind: 'silent' | 'reset' }> = [];
        const reads: Read[] = [];
        const pending: Array<Promise<void>> = [];
        for (const s of schedule) {
          if (s.kind === 'mode') {
            if (s.mode === 'pass') proxy.pass();
            else if (s.mode === 'latency') proxy.latency(s.ms);
            else {
              faults.push({ t: performance.now(), kind: s.mode });
              if (s.mode === 'silent') proxy.silent();
              else proxy.reset();
            }
          } else if (s.kind === 'reads') {
            for (let i = 0; i < s.n; i++) {
              const read: Read = { statements: s.statements, start: performance.now() };
              reads.push(read);
              let timer: NodeJS.Timeout | undefined;
              const run = SessionLocal.begin(async () => {
                // each statement takes sleepMs on the server: faults land while statements are in flight
                for (let k = 0; k < s.statements; k++) await engine.sequelize.query(`SELECT pg_sleep(${s.sleepMs / 1000}), pg_is_in_recovery()`);
              });
              const hang = new Promise<'hang'>((resolve) => {
                timer = setTimeout(() => resolve('hang'), READ_BOUND_MS);
              });
              pending.push(
                Promise.race([run.then(() => 'ok' as const), hang]).then(
                  (r) => {
                    read.end = performance.now();
                    if (r === 'hang') read.hung = true;
                    clearTimeout(timer);
                  },
                  (error) => {
                    read.end = performance.now();
                    read.error = error;
                    clearTimeout(timer);
                  },
                ),
              );
            }
          } else {
            await sleep(s.ms);
          }
        }
        proxy.pass();
        await Promise.all(pending);

        const problems: string[] = [];
        for (const r of reads) {
          // calm: no fault during the read nor in the 1.5 s before it (a silence may still be on, checks may still be failing)
          const calm = !faults.some((f) => f.t >= r.start - 1_500 && f.t <= (r.end ?? Number.POSITIVE_INFINITY));
          if (r.hung) problems.push(`a ${r.statements}-statement read did not settle within ${READ_BOUND_MS} ms`);
          else if (r.error !== undefined && !acceptableFailure(r.error)) problems.push(`unexpected failure: ${String(r.error)}`);
          else if (r.error !== undefined && calm) problems.push(`a read in a calm period failed: ${String(r.error)}`);
          // NOT FIXED (see the report of this branch): rarely, a one-statement read whose connection a reset
          // cut still fails with "write ECONNRESET" after its retry (seen after earlier schedules left the
          // pool in some state; not reproduced alone), so a read that met a fault is held to the 503-or-broken rule
        }
        // recovery
        await engine.ping({ replicas: true });
        await waitForState(engine, 'up', 10_000).catch((e) => problems.push(String(e)));
        // a check that was in flight during the faults may still mark it down once: reads come back to it
        await waitFor('a read-only session served by the replica again', 10_000, async () => (await SessionLocal.begin(() => served(engine))).standby === true).catch((e) => problems.push(String(e)));
        await waitFor('pools at rest', 5_000, () => {
          const st = engine.stats();
          return st.sessions.open === 0 && st.pool.inUse === 0 && st.pool.waiting === 0 && (st.pools?.replicas[0]?.inUse ?? 0) === 0;
        }).catch(() => problems.push(`pools not at rest: ${JSON.stringify(engine.stats())}`));
        await noneInTransaction(pair).catch((e) => problems.push(String(e)));
        await waitFor('proxied connections within pool.max + the health check', 5_000, () => proxy.connections <= POOL_MAX + 1).catch(() =>
          problems.push(`${proxy.connections} proxied connections open`),
        );
        const failed = reads.filter((r) => r.error !== undefined).length;
        if (process.env.FLAP_DEBUG) for (const r of reads) if (r.error) console.log(`FLAPFAIL ${r.statements} ${String(r.error).slice(0, 120)}`);
        report.push(`${schedule.length} steps, ${reads.length} reads, ${failed} failed, ${faults.length} faults`);
        if (problems.length > 0) throw new Error(`${problems.join('\n')}\nschedule: ${JSON.stringify(schedule)}`);
      }),
      {
        numRuns: Number(process.env.FLAP_RUNS ?? 14),
        endOnFailure: true,
        examples: [
          // found by this test: one-statement reads, a reset as they start, then a short silence
          [
            [
              { kind: 'reads', n: 2, statements: 1, sleepMs: 145 },
              { kind: 'mode', mode: 'reset', ms: 149 },
              { kind: 'mode', mode: 'latency', ms: 13 },
              { kind: 'wait', ms: 50 },
              { kind: 'mode', mode: 'silent', ms: 145 },
              { kind: 'wait', ms: 395 },
            ],
          ],
          // found by this test: a reset, then one-statement reads at once (a read failed with "write ECONNRESET")
          [
            [
              { kind: 'mode', mode: 'latency', ms: 141 },
              { kind: 'mode', mode: 'silent', ms: 53 },
              { kind: 'mode', mode: 'pass', ms: 36 },
              { kind: 'reads', n: 3, statements: 2, sleepMs: 58 },
              { kind: 'reads', n: 6, statements: 2, sleepMs: 37 },
              { kind: 'wait', ms: 271 },
              { kind: 'wait', ms: 336 },
              { kind: 'mode', mode: 'reset', ms: 66 },
              { kind: 'reads', n: 3, statements: 1, sleepMs: 78 },
              { kind: 'mode', mode: 'pass', ms: 101 },
            ],
          ],
        ],
      },
    );
    console.log(`flapping schedules: ${report.join(' | ')}`);
    expect(report.length).toBeGreaterThanOrEqual(Number(process.env.FLAP_RUNS ?? 14));
  }, 240_000);
});

import { describe, expect, it } from 'vitest';
import type { RequestLog } from '../src/load.js';
import {
  fallbackErrorVerdict,
  faultFigures,
  readYourWrites,
  replicaVerdicts,
  type InjectedReplicaFault,
  type ReadAfterWrite,
  type ReplicaFaultKind,
  type ReplicaSample,
} from '../src/replica-checks.js';

/** A small seeded generator: the same cases on every run, many of them. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SETTINGS = { checkIntervalMs: 500, checkTimeoutMs: 1_000, maxLagMs: 1_000, pollMs: 50 };

/**
 * One app's view of one fault: the replica serves reads until it is marked `markAfter` ms into the
 * fault, nothing while skipped, is seen up `backAfter` ms after the fault ends, then serves again.
 * Reads arrive every 20 ms; each is 200 unless `answerOf` says otherwise.
 */
function timeline(kind: ReplicaFaultKind, markAfter: number, backAfter: number, answerOf: (read: RequestLog, phase: 'before' | 'inFlight' | 'skipped' | 'after') => Partial<RequestLog> = () => ({})) {
  const fault: InjectedReplicaFault = { kind, startedAt: 10_000, endedAt: 15_000, nextAt: 25_000 };
  const markedAt = fault.startedAt + markAfter;
  const backAt = fault.endedAt + backAfter;
  const phase = (t: number) => (t < fault.startedAt ? 'before' : t < markedAt + 200 ? 'inFlight' : t < backAt ? 'skipped' : 'after');
  const samples: ReplicaSample[] = [];
  const log: RequestLog[] = [];
  let served = 0;
  for (let t = 8_000; t < fault.nextAt; t += 10) {
    const p = phase(t);
    if (t % 20 === 0) {
      const read: RequestLog = { route: t % 40 === 0 ? 'GET /items/:id' : 'GET /orders/:id', startedAt: t, ms: 5, status: 200, expected: false };
      Object.assign(read, answerOf(read, p));
      log.push(read);
      if (t < markedAt || t >= backAt) served++;
    }
    if (t % 50 === 0) samples.push({ at: t, state: t >= markedAt && t < backAt ? (kind === 'lagging' ? 'lagging' : 'down') : 'up', served, lagMs: 0 });
  }
  return { fault, samples, log, markedAt, backAt };
}

describe('replica checks (pure logic of `pnpm chaos --replica`)', () => {
  it('measures mark-down and return from the /stats samples, and the reads served in each phase (generated timelines)', () => {
    const next = random(18);
    for (let i = 0; i < 200; i++) {
      const kind = (['stopped', 'silent', 'lagging'] as const)[i % 3]!;
      const markAfter = 50 * Math.floor(next() * 60); // 0 .. 2950 ms, on the poll grid
      const backAfter = 50 * (1 + Math.floor(next() * 80));
      const { fault, samples, log } = timeline(kind, markAfter, backAfter);
      const figures = faultFigures(fault, samples, log, SETTINGS.pollMs);
      expect(figures.markedMs).toBe(markAfter);
      expect(figures.backMs).toBe(backAfter);
      expect(figures.servedWhileSkipped).toBe(0);
      // reads every 20 ms from the return to the next fault
      expect(figures.servedAfterBack).toBe(Math.floor((fault.nextAt - 50) / 20) - Math.floor((fault.endedAt + backAfter) / 20));
      expect(Object.keys(figures.fallback)).toEqual(['200']);
      expect(figures.fallbackLatency.p50).toBe(5);
    }
  });

  it('passes a clean fault and fails each broken promise: a 500, a late mark-down, reads served while lagging, no reads after the return, a read-your-writes miss', () => {
    const reads: ReadAfterWrite[] = [
      { orderId: 1, carrier: 'header', status: 200, foundId: 1, startedAt: 0, ms: 3 },
      { orderId: 2, carrier: 'cookie', status: 200, foundId: 2, startedAt: 0, ms: 3 },
      { orderId: 3, carrier: 'none', status: 404, startedAt: 0, ms: 3 },
    ];
    const verdictsOf = (
      kind: ReplicaFaultKind,
      markAfter: number,
      options: { answerOf?: Parameters<typeof timeline>[3]; servedWhileLagging?: boolean; noReadsAfter?: boolean; reads?: ReadAfterWrite[] } = {},
    ) => {
      const t = timeline(kind, markAfter, 300, options.answerOf);
      if (options.servedWhileLagging) for (const s of t.samples) if (s.state === 'lagging' && s.at > t.markedAt + 500) s.served += 1;
      if (options.noReadsAfter) for (const s of t.samples) if (s.at >= t.backAt) s.served = t.samples.find((x) => x.at === t.backAt)!.served;
      const figures = [faultFigures(t.fault, t.samples, t.log, SETTINGS.pollMs)];
      const verdicts = replicaVerdicts({ app: 'a', faults: [t.fault], figures, log: t.log, reads: options.reads ?? reads, kills: [], settings: SETTINGS });
      return Object.fromEntries(verdicts.map((v) => [v.name.split(' (')[0]!.split(' within')[0]!.split(' beyond')[0]!, v.pass]));
    };
    expect(Object.values(verdictsOf('silent', 1_400)).every(Boolean)).toBe(true);
    expect(Object.values(verdictsOf('lagging', 1_600)).every(Boolean)).toBe(true);
    expect(
      verdictsOf('silent', 1_400, { answerOf: (r, p) => (p === 'inFlight' && r.startedAt === 10_100 ? { status: 500, error: 'internal_error' } : {}) })[
        'replica: no 500 and no unanswered request on the read routes'
      ],
    ).toBe(false);
    expect(
      verdictsOf('silent', 1_400, { answerOf: (r, p) => (p === 'inFlight' && r.startedAt === 10_100 ? { status: 503, error: 'replica_unavailable' } : {}) })[
        'replica: no 500 and no unanswered request on the read routes'
      ],
    ).toBe(true);
    expect(
      verdictsOf('stopped', 600, { answerOf: (r, p) => (p === 'skipped' && r.startedAt === 12_000 ? { status: 503, error: 'replica_unavailable' } : {}) })[
        'replica: reads answered from the primary while it is down or lagging'
      ],
    ).toBe(false);
    expect(
      verdictsOf('stopped', 600, { answerOf: (_r, p) => (p === 'skipped' ? { status: 503, error: 'database_busy' } : {}) })['replica: reads answered from the primary while it is down or lagging'],
    ).toBe(true);
    expect(
      verdictsOf('stopped', 600, { answerOf: (r, p) => (p === 'skipped' && r.startedAt === 12_000 ? { status: 500, error: 'commit_outcome_unknown' } : {}) })[
        'replica: reads answered from the primary while it is down or lagging'
      ],
    ).toBe(false);
    expect(verdictsOf('silent', 1_900)['replica: marked down']).toBe(false);
    expect(verdictsOf('lagging', 1_600, { servedWhileLagging: true })['replica: skipped while lagging']).toBe(false);
    expect(verdictsOf('stopped', 100, { noReadsAfter: true })['replica: up again and serving reads after each fault']).toBe(false);
    const miss = [...reads, { orderId: 4, carrier: 'header' as const, status: 404, startedAt: 0, ms: 3 }];
    expect(verdictsOf('stopped', 100, { reads: miss })['replica: read-your-writes']).toBe(false);
  });

  it('marks the answers of reads hit by pg_terminate_backend on the primary apart (not a replica fault), in flight and in fallback', () => {
    const t = timeline('stopped', 600, 300, (r, p) => (p === 'skipped' && r.startedAt === 12_000 ? { status: 500, error: 'commit_outcome_unknown' } : {}));
    const figures = faultFigures(t.fault, t.samples, t.log, SETTINGS.pollMs, (e) => e.startedAt === 12_000);
    expect(figures.fallback['500 commit_outcome_unknown (pg_terminate_backend on the primary)']).toBe(1);
    expect(figures.fallback['500 commit_outcome_unknown']).toBeUndefined();
    const verdicts = replicaVerdicts({
      app: 'a',
      faults: [t.fault],
      figures: [figures],
      log: t.log,
      reads: [{ orderId: 1, carrier: 'header', status: 200, foundId: 1, startedAt: 0, ms: 1 }],
      kills: [{ at: 12_001, app: 'a' }],
      settings: SETTINGS,
    });
    expect(verdicts.every((v) => v.pass)).toBe(true);
  });

  it('counts read-your-writes misses only for reads that sent the token back; the control reads are reported apart', () => {
    const next = random(7);
    for (let i = 0; i < 100; i++) {
      const reads: ReadAfterWrite[] = Array.from({ length: 1 + Math.floor(next() * 30) }, (_, k) => {
        const carrier = (['header', 'cookie', 'none'] as const)[Math.floor(next() * 3)]!;
        const outcome = next();
        const status = outcome < 0.7 ? 200 : outcome < 0.85 ? 404 : 503;
        return { orderId: k, carrier, status, foundId: status === 200 ? (outcome < 0.65 ? k : k + 1) : undefined, startedAt: 0, ms: 1 };
      });
      const r = readYourWrites(reads);
      const withToken = reads.filter((x) => x.carrier !== 'none');
      expect(r.withToken).toBe(withToken.length);
      expect(r.found + r.misses + r.failed).toBe(withToken.length);
      expect(r.misses).toBe(withToken.filter((x) => x.status === 404 || (x.status === 200 && x.foundId !== x.orderId)).length);
      expect(r.control).toBe(reads.length - withToken.length);
    }
  });

  it("fallback 'error': 503 replica_unavailable + Retry-After while down or lagging, 200 while up; a 503 while up only during a fault; never a 500", () => {
    const fault: InjectedReplicaFault = { kind: 'stopped', startedAt: 10_000, endedAt: 15_000, nextAt: 25_000 };
    const probe = (startedAt: number, before: string, after: string, status: number, error?: string, retryAfter?: string) => ({ startedAt, ms: 5, before, after, status, error, retryAfter });
    const clean = [
      probe(1_000, 'up', 'up', 200),
      probe(11_000, 'down', 'down', 503, 'replica_unavailable', '1'),
      probe(10_001, 'up', 'up', 503, 'replica_unavailable', '1'),
      probe(20_000, 'up', 'up', 200),
    ];
    expect(fallbackErrorVerdict('a', clean, [fault], false).pass).toBe(true);
    expect(fallbackErrorVerdict('a', clean, [fault], true).pass).toBe(false);
    expect(fallbackErrorVerdict('a', [...clean, probe(20_100, 'up', 'up', 503, 'replica_unavailable', '1')], [fault], false).pass).toBe(false);
    expect(fallbackErrorVerdict('a', [...clean, probe(12_000, 'down', 'down', 200)], [fault], false).pass).toBe(false);
    expect(fallbackErrorVerdict('a', [...clean, probe(12_000, 'down', 'down', 503, 'replica_unavailable')], [fault], false).pass).toBe(false);
    expect(fallbackErrorVerdict('a', [...clean, probe(10_002, 'up', 'up', 500, 'commit_failed')], [fault], false).pass).toBe(false);
    // a read that saw the state change under it is not judged by state, only by "never a 500"
    expect(fallbackErrorVerdict('a', [...clean, probe(10_003, 'up', 'down', 503, 'database_unavailable', '1')], [fault], false).pass).toBe(true);
  });
});

import type { Verdict } from './checks.js';
import type { RequestLog } from './load.js';

/** The replica faults of `--replica`. */
export type ReplicaFaultKind = 'stopped' | 'silent' | 'lagging';

/** What the shops' read-only sessions must see during a fault: `down` (stopped, silent) or `lagging` (replay paused, beyond maxLagMs). */
export function expectedState(kind: ReplicaFaultKind): 'down' | 'lagging' {
  return kind === 'lagging' ? 'lagging' : 'down';
}

/** One `/stats` poll of one app: the replica's state and its `served` counter. */
export interface ReplicaSample {
  /** `Date.now()` when the answer arrived. */
  at: number;
  state: string;
  served: number;
  lagMs: number | null;
}

/** One replica fault as it was injected (times are `Date.now()`). */
export interface InjectedReplicaFault {
  kind: ReplicaFaultKind;
  startedAt: number;
  /** The fault was lifted: the standby accepts again, the proxy passes, replay resumed. */
  endedAt: number;
  /** Start of the next fault (or the end of the load): the window in which the replica must serve again. */
  nextAt: number;
}

/** The deadlines the shops were configured with (`DB_REPLICA_*`). */
export interface ReplicaSettings {
  checkIntervalMs: number;
  checkTimeoutMs: number;
  maxLagMs: number;
  /** Granularity of our own observation (`/stats` polled every `pollMs`, plus its round trip). */
  pollMs: number;
}

/** One read-after-write: `GET /orders/:id` right after its `POST /orders` answered 201. */
export interface ReadAfterWrite {
  orderId: number;
  /** How the commit position went back: `header` (`x-sessionlocal-lsn`), `cookie` (`sl_lsn`), or `none` (the control: no token). */
  carrier: 'header' | 'cookie' | 'none';
  status?: number;
  /** `id` of the 200 body. */
  foundId?: number;
  startedAt: number;
  ms: number;
}

/** Latency summary of a set of requests (ms). */
export interface Latency {
  n: number;
  p50: number | null;
  p95: number | null;
  max: number | null;
}

/** What one app saw of one fault. */
export interface AppFaultFigures {
  /** ms from the fault to the first `/stats` showing the expected state (`null`: never seen). */
  markedMs: number | null;
  /** ms from lifting the fault to the first `/stats` showing `up` again (`null`: not within the window). */
  backMs: number | null;
  /** Reads started between the fault and its mark-down (in flight on the replica or sent to it): by answer. */
  inFlight: Record<string, number>;
  /** Reads started once the replica was seen down/lagging and before it was seen up again: by answer. */
  fallback: Record<string, number>;
  /** Latency of the fallback reads that answered 200 (the primary served them). */
  fallbackLatency: Latency;
  /** Longest read of the in-flight window (how long a read waited for the replica before failing over or failing). */
  inFlightMaxMs: number | null;
  /** `served` between the mark-down (+ one poll) and the fault's end: must be 0 while skipped. */
  servedWhileSkipped: number | null;
  /** `served` from the replica's return to the next fault: > 0 when reads came back to it. */
  servedAfterBack: number | null;
}

/** Routes served by read-only sessions in the shops (with replicas). */
export const READ_ROUTES = new Set(['GET /items/:id', 'GET /orders/:id', 'GET /orders/:id (after write)']);

const GRACE_MS = 200;

export function latency(values: number[]): Latency {
  if (values.length === 0) return { n: 0, p50: null, p95: null, max: null };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), max: Math.round(sorted[sorted.length - 1]!) };
}

/** `200`, `503 replica_unavailable`, `no answer`. */
export function answer(entry: RequestLog): string {
  if (entry.status === undefined) return 'no answer';
  return entry.status >= 500 ? `${entry.status} ${entry.error ?? '?'}` : String(entry.status);
}

/** Answers by kind; those of requests `killed` says were hit by `pg_terminate_backend` on the primary are marked so. */
const tally = (entries: RequestLog[], killed: (e: RequestLog) => boolean = () => false): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const e of entries) {
    const key = killed(e) && e.status !== 200 ? `${answer(e)} ${KILLED}` : answer(e);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
};

const KILLED = '(pg_terminate_backend on the primary)';

/** The last sample at or before `at` (the counter as it was then). */
function servedAt(samples: ReplicaSample[], at: number): number | undefined {
  let found: ReplicaSample | undefined;
  for (const s of samples) {
    if (s.at > at) break;
    found = s;
  }
  return found?.served;
}

/** Figures of one fault for one app, from its `/stats` samples (in time order) and its request log. */
export function faultFigures(fault: InjectedReplicaFault, samples: ReplicaSample[], log: RequestLog[], pollMs: number, killed: (e: RequestLog) => boolean = () => false): AppFaultFigures {
  const want = expectedState(fault.kind);
  const marked = samples.find((s) => s.at >= fault.startedAt && s.at <= fault.nextAt && s.state === want);
  const back = samples.find((s) => s.at >= fault.endedAt && s.at <= fault.nextAt && s.state === 'up');
  const reads = log.filter((e) => READ_ROUTES.has(e.route) && !e.expected);
  const markedAt = marked?.at ?? fault.endedAt;
  const backAt = back?.at ?? fault.nextAt;
  const inFlight = reads.filter((e) => e.startedAt >= fault.startedAt && e.startedAt < markedAt + GRACE_MS);
  const fallback = marked ? reads.filter((e) => e.startedAt >= markedAt + GRACE_MS && e.startedAt + e.ms <= backAt) : [];
  const skippedFrom = servedAt(samples, markedAt + pollMs + GRACE_MS);
  const skippedTo = servedAt(samples, fault.endedAt);
  const backFrom = back ? servedAt(samples, back.at) : undefined;
  const backTo = servedAt(samples, fault.nextAt);
  return {
    markedMs: marked ? marked.at - fault.startedAt : null,
    backMs: back ? back.at - fault.endedAt : null,
    inFlight: tally(inFlight, killed),
    fallback: tally(fallback, killed),
    fallbackLatency: latency(fallback.filter((e) => e.status === 200).map((e) => e.ms)),
    inFlightMaxMs: inFlight.length ? Math.round(Math.max(...inFlight.map((e) => e.ms))) : null,
    servedWhileSkipped: marked && skippedFrom !== undefined && skippedTo !== undefined && fault.endedAt > markedAt + pollMs + GRACE_MS ? skippedTo - skippedFrom : null,
    servedAfterBack: backFrom !== undefined && backTo !== undefined ? backTo - backFrom : null,
  };
}

/** Read-your-writes over the reads made right after a 201: misses are 404s (or another id) when the token went back. */
export function readYourWrites(reads: ReadAfterWrite[]): { withToken: number; found: number; misses: number; failed: number; control: number; controlMisses: number } {
  const withToken = reads.filter((r) => r.carrier !== 'none');
  const control = reads.filter((r) => r.carrier === 'none');
  const miss = (r: ReadAfterWrite) => r.status === 404 || (r.status === 200 && r.foundId !== r.orderId);
  return {
    withToken: withToken.length,
    found: withToken.filter((r) => r.status === 200 && r.foundId === r.orderId).length,
    misses: withToken.filter(miss).length,
    failed: withToken.filter((r) => r.status === undefined || r.status >= 500).length,
    control: control.length,
    controlMisses: control.filter(miss).length,
  };
}

/** Whether a request was in flight when `pg_terminate_backend` hit a backend of its app (a primary fault, counted elsewhere). */
export function hitByKill(app: string, entry: RequestLog, kills: Array<{ at: number; app: string | undefined }>): boolean {
  return kills.some((k) => (k.app === undefined || k.app === app) && k.at >= entry.startedAt - 50 && k.at <= entry.startedAt + entry.ms + 50);
}

/**
 * The per-app verdicts of `--replica`: read-your-writes, no 500 on the read routes, fallback
 * reads answered, mark-down within the documented deadline, skipped while lagging, served
 * again after each fault.
 */
export function replicaVerdicts(input: {
  app: string;
  faults: InjectedReplicaFault[];
  figures: AppFaultFigures[];
  log: RequestLog[];
  reads: ReadAfterWrite[];
  kills: Array<{ at: number; app: string | undefined }>;
  settings: ReplicaSettings;
}): Verdict[] {
  const { app, faults, figures, log, reads, kills, settings } = input;
  const verdicts: Verdict[] = [];
  const ryw = readYourWrites(reads);
  verdicts.push({
    app,
    name: 'replica: read-your-writes (every 201 read back with its token is found)',
    pass: ryw.misses === 0 && ryw.withToken > 0,
    detail: `${ryw.withToken} reads after a 201 with the token (header or cookie): ${ryw.found} found, ${ryw.misses} misses, ${ryw.failed} failed (5xx/no answer); control without token: ${ryw.controlMisses} of ${ryw.control} missed`,
    examples: reads.filter((r) => r.carrier !== 'none' && (r.status === 404 || (r.status === 200 && r.foundId !== r.orderId))).slice(0, 5),
  });

  const reading = log.filter((e) => READ_ROUTES.has(e.route) && !e.expected);
  const broken = reading.filter((e) => (e.status === undefined || e.status === 500) && !hitByKill(app, e, kills));
  verdicts.push({
    app,
    name: 'replica: no 500 and no unanswered request on the read routes',
    pass: broken.length === 0 && reading.length > 0,
    detail: `${reading.length} reads, ${broken.length} answered 500 or not at all (not counting ${reading.filter((e) => (e.status === undefined || e.status === 500) && hitByKill(app, e, kills)).length} hit by pg_terminate_backend on the primary); 503s: ${JSON.stringify(tally(reading.filter((e) => e.status === 503)))}`,
    examples: broken.slice(0, 5),
  });

  // once the replica is seen down or lagging, reads go to the primary (fallback 'primary'): 200, or 503 database_busy (the
  // primary's pool). A 404 is a read without a token that reached the replica just after it came back, before /stats showed
  // it (up means at most maxLagMs behind: such a read may be stale); with a token it is a read-your-writes miss, judged above.
  const fallbackBad = figures.flatMap((f, i) =>
    Object.entries(f.fallback)
      .filter(([key]) => key !== '200' && key !== '404' && key !== '503 database_busy' && !key.endsWith(KILLED))
      .map(([key, n]) => `${faults[i]!.kind}: ${n} ${key}`),
  );
  verdicts.push({
    app,
    name: 'replica: reads answered from the primary while it is down or lagging',
    pass: fallbackBad.length === 0 && figures.every((f) => f.markedMs !== null),
    detail: faults
      .map((fault, i) => {
        const f = figures[i]!;
        return `${fault.kind}: ${JSON.stringify(f.fallback)}, p50 ${f.fallbackLatency.p50 ?? '-'} ms, max ${f.fallbackLatency.max ?? '-'} ms`;
      })
      .join('; '),
    examples: fallbackBad,
  });

  const deadline = settings.checkIntervalMs + settings.checkTimeoutMs + settings.pollMs + GRACE_MS;
  const downs = faults.map((fault, i) => ({ fault, f: figures[i]! })).filter(({ fault }) => fault.kind !== 'lagging');
  if (downs.length > 0) {
    verdicts.push({
      app,
      name: `replica: marked down within checkIntervalMs + checkTimeoutMs (${settings.checkIntervalMs} + ${settings.checkTimeoutMs} ms, + ${settings.pollMs + GRACE_MS} ms observation)`,
      pass: downs.every(({ f }) => f.markedMs !== null && f.markedMs <= deadline),
      detail: downs.map(({ fault, f }) => `${fault.kind} ${f.markedMs ?? 'never'} ms (in flight: ${JSON.stringify(f.inFlight)}, longest ${f.inFlightMaxMs ?? '-'} ms)`).join('; '),
    });
  }

  const lags = faults.map((fault, i) => ({ fault, f: figures[i]! })).filter(({ fault }) => fault.kind === 'lagging');
  if (lags.length > 0) {
    verdicts.push({
      app,
      name: `replica: skipped while lagging beyond maxLagMs (${settings.maxLagMs} ms)`,
      pass: lags.every(({ f }) => f.markedMs !== null && f.servedWhileSkipped === 0),
      detail: lags.map(({ f }) => `marked lagging after ${f.markedMs ?? 'never'} ms; ${f.servedWhileSkipped ?? '?'} reads served by the replica while lagging`).join('; '),
    });
  }

  verdicts.push({
    app,
    name: 'replica: up again and serving reads after each fault',
    pass: figures.length > 0 && figures.every((f) => f.backMs !== null && (f.servedAfterBack ?? 0) > 0),
    detail: faults.map((fault, i) => `${fault.kind}: up ${figures[i]!.backMs ?? 'never'} ms after, then ${figures[i]!.servedAfterBack ?? '?'} reads on the replica`).join('; '),
  });
  return verdicts;
}

/** One read of the `DB_REPLICA_FALLBACK=error` shop, with its replica's state just before and just after. */
export interface FallbackErrorProbe {
  startedAt: number;
  ms: number;
  status?: number;
  error?: string;
  retryAfter?: string;
  before: string;
  after: string;
}

/**
 * `fallback: 'error'`: a read while the replica is down or lagging (before and after the read)
 * answers 503 `replica_unavailable` with `Retry-After`; a read while it is up answers 200, except
 * during a fault (from its start to its end + 1 s), where 503 `replica_unavailable` is allowed too
 * (its replica connection was lost under it before the mark-down). Never a 500, never no answer.
 */
export function fallbackErrorVerdict(app: string, probes: FallbackErrorProbe[], faults: InjectedReplicaFault[], crashed: boolean): Verdict {
  const unavailableAnswer = (p: FallbackErrorProbe) => p.status === 503 && p.error === 'replica_unavailable' && /^[1-9][0-9]*$/.test(p.retryAfter ?? '');
  const inFault = (p: FallbackErrorProbe) => faults.some((f) => p.startedAt + p.ms >= f.startedAt && p.startedAt <= f.endedAt + 1_000);
  const unavailable = probes.filter((p) => p.before === p.after && (p.before === 'down' || p.before === 'lagging'));
  const up = probes.filter((p) => p.before === 'up' && p.after === 'up');
  const bad = [
    ...probes.filter((p) => p.status === undefined || p.status === 500),
    ...unavailable.filter((p) => !unavailableAnswer(p)),
    ...up.filter((p) => p.status !== 200 && !(inFault(p) && unavailableAnswer(p))),
  ];
  const ms = latency(unavailable.map((p) => p.ms));
  return {
    app,
    name: "replica, fallback 'error': 503 replica_unavailable + Retry-After while down or lagging, 200 while up",
    pass: !crashed && bad.length === 0 && unavailable.length > 0 && up.length > 0,
    detail: `${probes.length} reads: ${unavailable.length} while down/lagging (${unavailable.filter(unavailableAnswer).length} answered 503 replica_unavailable, p50 ${ms.p50 ?? '-'} ms, max ${ms.max ?? '-'} ms), ${up.length} while up (${up.filter((p) => p.status === 200).length} answered 200, ${up.filter(unavailableAnswer).length} 503 replica_unavailable during a fault), ${bad.length} otherwise${crashed ? '; the process exited' : ''}`,
    examples: [...new Set(bad)].slice(0, 5),
  };
}

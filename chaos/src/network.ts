import type { FaultProxy } from '@sessionlocal/session-core/testing';
import type { Verdict } from './checks.js';
import { send, sleep, until } from './http.js';
import type { AppLoad, RequestLog } from './load.js';

/** One network fault of the schedule, at a fraction of the run. */
export interface NetworkFault {
  kind: 'latency' | 'silent' | 'reset' | 'drip';
  /** Start, as a fraction of the run's duration. */
  at: number;
  /** How long the fault lasts (0: instantaneous, `reset`). */
  durationMs: number;
  /** `latency`: added delay; `drip`: ms per byte. */
  ms?: number;
}

/** 60 s run: drip 3 s, latency 3 s, (PostgreSQL restart at 0.4), silent 5 s, resets. Windows never overlap (a fault due while the restart is still being recovered from waits for it). */
export const NETWORK_SCHEDULE: NetworkFault[] = [
  { kind: 'drip', at: 0.05, durationMs: 3_000, ms: 50 },
  { kind: 'latency', at: 0.275, durationMs: 3_000, ms: 200 },
  { kind: 'silent', at: 0.467, durationMs: 5_000 },
  { kind: 'reset', at: 0.733, durationMs: 0 },
];

/** What happened around one fault. */
export interface NetworkFaultResult {
  kind: NetworkFault['kind'];
  /** ms after the load started. */
  startedAt: number;
  /** ms after the load started: the network is back. */
  returnedAt?: number;
  /** Per app: ms from the network's return to the first `/health` 200 (null: none within 10 s). */
  healthMs: Record<string, number | null>;
  /** How long after the return failures were counted (10 s, shorter when the next fault comes first). */
  windowMs: number;
  /** Per app: requests started and finished within the window after the return that failed for a database reason. */
  staleFailures: Record<string, number>;
  examples: unknown[];
}

/** Responses that mean "the database failed this request" (not pool contention, not a planned fault). */
function failedByDatabase(entry: RequestLog): boolean {
  if (entry.expected) return false;
  if (entry.status === undefined) return true; // no answer at all
  if (entry.status === 503) return entry.error !== 'database_busy';
  return entry.status >= 500;
}

/**
 * Drive the proxy through `schedule`. After each fault, the requests started within the window
 * that failed for a database reason are counted, except those in flight when `pg_terminate_backend`
 * hit the same app (`kills`: they have their own cause); pool contention (503 `database_busy`) and
 * planned failures (`x-fail-at`, client disconnects) are not failures of the recovery.
 */
export async function runNetworkFaults(options: {
  proxy: FaultProxy;
  loads: AppLoad[];
  schedule: NetworkFault[];
  durationMs: number;
  loadStarted: number;
  /** Start of other faults that must not fall into a window (the PostgreSQL restart), ms after load start. */
  otherFaultsAt: number[];
  /** Resolves when no other fault is still being recovered from (the restart's `/health` probing): a fault due meanwhile waits. */
  otherFaultsSettled?: () => Promise<void>;
  done: () => boolean;
  /** `Date.now()` and app (undefined behind PgBouncer) of every backend terminated. */
  kills: Array<{ at: number; app: string | undefined }>;
  say: (line: string) => void;
}): Promise<NetworkFaultResult[]> {
  const { proxy, loads, schedule, durationMs, loadStarted, done, say } = options;
  const results: NetworkFaultResult[] = [];
  const starts = [...schedule.map((f) => f.at * durationMs), ...options.otherFaultsAt, durationMs].sort((a, b) => a - b);
  for (const fault of schedule) {
    const startAt = fault.at * durationMs;
    const wait = loadStarted + startAt - Date.now();
    if (wait > 0) await sleep(wait);
    // on a loaded machine PostgreSQL's restart can outlast its slot: never measure two recoveries at once
    await options.otherFaultsSettled?.();
    if (done()) break;
    const nextStart = starts.find((s) => s > startAt + 1) ?? durationMs;
    const result: NetworkFaultResult = { kind: fault.kind, startedAt: Date.now() - loadStarted, healthMs: {}, windowMs: 0, staleFailures: {}, examples: [] };
    say(`network: ${fault.kind}${fault.ms ? ` ${fault.ms} ms` : ''}${fault.durationMs ? ` for ${fault.durationMs / 1000} s` : ''} (fault proxy)`);
    for (const load of loads) load.count(load.faults, `network:${fault.kind}`);
    if (fault.kind === 'latency') proxy.latency(fault.ms ?? 200);
    else if (fault.kind === 'drip') proxy.drip(fault.ms ?? 50);
    else if (fault.kind === 'silent') proxy.silent();
    else proxy.reset();
    if (fault.durationMs > 0) await sleep(fault.durationMs);
    proxy.pass();
    const returned = Date.now();
    result.returnedAt = returned - loadStarted;
    const windowMs = Math.max(0, Math.min(10_000, loadStarted + nextStart - returned - 200));
    result.windowMs = windowMs;
    await Promise.all(
      loads.map(async (load) => {
        result.healthMs[load.app] = (await until(async () => (await send({ port: load.shop.port, path: '/health', timeoutMs: 2_000 })).status === 200, 10_000, 50)) ?? null;
      }),
    );
    results.push(result);
    say(`network back after ${fault.kind}: /health 200 after ${JSON.stringify(result.healthMs)} ms`);
  }
  return results;
}

/** After the load: count, per fault, the requests started in its window that failed for a database reason. */
export function countStaleFailures(loads: AppLoad[], results: NetworkFaultResult[], loadStarted: number, kills: Array<{ at: number; app: string | undefined }>): void {
  const killed = (app: string, e: RequestLog) => kills.some((k) => (k.app === undefined || k.app === app) && k.at >= e.startedAt - 50 && k.at <= e.startedAt + e.ms + 50);
  for (const result of results) {
    if (result.returnedAt === undefined) continue;
    const returned = loadStarted + result.returnedAt;
    const windowEnd = returned + result.windowMs;
    for (const load of loads) {
      // requests started and finished inside the window (one still running when the next fault begins has that cause)
      const failed = load.log.filter((e) => e.startedAt >= returned && e.startedAt + e.ms <= windowEnd && failedByDatabase(e) && !killed(load.app, e));
      result.staleFailures[load.app] = failed.length;
      result.examples.push(...failed.slice(0, 3).map((e) => ({ app: load.app, ...e, startedAt: e.startedAt - returned })));
    }
  }
}

/** Longest request per app against its budget: acquire + connect + statements x reply deadline + 1 s. */
export function longestRequestVerdicts(loads: AppLoad[], budget: { acquireMs: number; connectMs: number; replyMs: number }): Verdict[] {
  const statements = (route: string) => (route === 'POST /orders' ? 7 : route.startsWith('GET /sleep') ? 3 : 3);
  return loads.map((load) => {
    let worst: { route: string; ms: number; budgetMs: number; ratio: number } | undefined;
    for (const entry of load.log) {
      if (entry.status === undefined && entry.expected) continue; // cut by the client on purpose
      const budgetMs = budget.acquireMs + budget.connectMs + statements(entry.route) * budget.replyMs + 1_000;
      const ratio = entry.ms / budgetMs;
      if (!worst || ratio > worst.ratio) worst = { route: entry.route, ms: Math.round(entry.ms), budgetMs, ratio };
    }
    return {
      app: load.app,
      name: 'longest request within acquire + statement deadlines + 1 s',
      pass: worst === undefined || worst.ratio <= 1,
      detail: worst ? `longest (relative to its budget): ${worst.route} ${worst.ms} ms, budget ${worst.budgetMs} ms` : 'no requests',
    };
  });
}

/** The per-app verdicts of the network faults. */
export function networkVerdicts(loads: AppLoad[], results: NetworkFaultResult[]): Verdict[] {
  const verdicts: Verdict[] = [];
  for (const load of loads) {
    const health = results.map((r) => `${r.kind} ${r.healthMs[load.app] ?? 'none'}`);
    verdicts.push({
      app: load.app,
      name: '/health 200 within 2 s after the network returns',
      pass: results.length > 0 && results.every((r) => (r.healthMs[load.app] ?? Infinity) <= 2_000),
      detail: results.length ? `ms after return: ${health.join(', ')}` : 'no network fault happened',
    });
    const stale = results.map((r) => `${r.kind} ${r.staleFailures[load.app] ?? 0} in ${(r.windowMs / 1000).toFixed(1)} s`);
    verdicts.push({
      app: load.app,
      name: '0 failed requests after the network returns (stale connections)',
      pass: results.length > 0 && results.every((r) => (r.staleFailures[load.app] ?? 0) === 0),
      detail: results.length ? stale.join(', ') : 'no network fault happened',
      examples: results.flatMap((r) => r.examples.filter((e) => (e as { app: string }).app === load.app)).slice(0, 5),
    });
  }
  return verdicts;
}

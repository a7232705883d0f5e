import type { FaultProxy } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { send, sleep } from './http.js';
import type { AppLoad } from './load.js';
import type { Cluster } from './postgres.js';
import { expectedState, type FallbackErrorProbe, type InjectedReplicaFault, type ReplicaFaultKind, type ReplicaSample, type ReplicaSettings } from './replica-checks.js';
import type { ShopProcess } from './shops.js';

/** One replica fault of the schedule, at a fraction of the run. */
export interface ReplicaFault {
  kind: ReplicaFaultKind;
  at: number;
  durationMs: number;
}

/**
 * 60 s run: the standby stopped (refuses) for 5 s, then silent through the proxy (bytes dropped,
 * sockets open) for 5 s, then its replay paused for 5 s while the primary keeps committing
 * (lagging beyond maxLagMs); after each, it comes back and must serve reads again.
 */
export const REPLICA_SCHEDULE: ReplicaFault[] = [
  { kind: 'stopped', at: 0.15, durationMs: 5_000 },
  { kind: 'silent', at: 0.42, durationMs: 5_000 },
  { kind: 'lagging', at: 0.67, durationMs: 5_000 },
];

/** The shops' replica settings (`DB_REPLICA_*`) and how often `/stats` is polled. */
export const REPLICA_SETTINGS: ReplicaSettings = { checkIntervalMs: 500, checkTimeoutMs: 1_000, maxLagMs: 1_000, pollMs: 50 };

/** `DB_REPLICA_*` for the shops. */
export function replicaEnv(replicaUrl: string, settings: ReplicaSettings = REPLICA_SETTINGS): Record<string, string> {
  return {
    DATABASE_REPLICA_URLS: replicaUrl,
    DB_REPLICA_MAX_LAG_MS: String(settings.maxLagMs),
    DB_REPLICA_CHECK_INTERVAL_MS: String(settings.checkIntervalMs),
    DB_REPLICA_CHECK_TIMEOUT_MS: String(settings.checkTimeoutMs),
    DB_REPLICA_FALLBACK: 'primary',
  };
}

/** One statement on a fresh connection to `url` (never through the proxy). */
export async function queryOnce<T extends Record<string, unknown>>(url: string, sql: string, timeoutMs = 5_000): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Resolve once the standby streams from the primary and has replayed everything the primary wrote so far. */
export async function standbyCaughtUp(primary: Cluster, standby: Cluster, timeoutMs = 30_000): Promise<number> {
  const started = Date.now();
  const [row] = await queryOnce<{ lsn: string }>(primary.url(), 'SELECT pg_current_wal_insert_lsn()::text AS lsn');
  for (let i = 0; i < 100_000; i++) {
    const [ok] = await queryOnce<{ ok: boolean; streaming: boolean }>(
      standby.url(),
      `SELECT pg_last_wal_replay_lsn() >= '${row?.lsn}'::pg_lsn AS ok, EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming') AS streaming`,
    ).catch(() => [undefined]);
    if (ok?.ok && ok.streaming) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`the standby did not replay up to ${row?.lsn} within ${timeoutMs} ms`);
    await sleep(50);
  }
  throw new Error('unreachable');
}

/** Polls every app's `/stats` and keeps the replica's state and `served` counter over time. */
export class ReplicaObserver {
  readonly samples = new Map<string, ReplicaSample[]>();
  private stopped = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly loads: AppLoad[],
    private readonly pollMs: number,
  ) {
    for (const load of loads) this.samples.set(load.app, []);
  }

  start(): void {
    this.running = Promise.all(
      this.loads.map(async (load) => {
        const list = this.samples.get(load.app)!;
        for (let i = 0; i < 1_000_000 && !this.stopped; i++) {
          const r = await send({ port: load.shop.port, path: '/stats', agent: load.agent, timeoutMs: 2_000 });
          const replica = (r.body as { pools?: { replicas?: Array<{ state: string; served: number; lagMs: number | null }> } } | undefined)?.pools?.replicas?.[0];
          if (replica) list.push({ at: Date.now(), state: replica.state, served: replica.served, lagMs: replica.lagMs });
          await sleep(this.pollMs);
        }
      }),
    ).then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** Resolve with the ms until every app's replica was seen in `state` after `since` (undefined: not within `timeoutMs`). */
  async until(state: string, since: number, timeoutMs: number): Promise<number | undefined> {
    const started = Date.now();
    for (let i = 0; i < 100_000; i++) {
      if ([...this.samples.values()].every((list) => list.some((s) => s.at >= since && s.state === state))) return Date.now() - started;
      if (Date.now() - started > timeoutMs) return undefined;
      await sleep(20);
    }
    return undefined;
  }
}

/**
 * Drive the replica faults of `schedule`: stop and restart the standby, silence the proxy in front
 * of it, pause and resume its replay. After each, wait until every app sees the replica up again
 * (bounded) before the next one may start.
 */
export async function runReplicaFaults(options: {
  primary: Cluster;
  standby: Cluster;
  proxy: FaultProxy;
  loads: AppLoad[];
  observer: ReplicaObserver;
  schedule: ReplicaFault[];
  durationMs: number;
  loadStarted: number;
  done: () => boolean;
  say: (line: string) => void;
}): Promise<InjectedReplicaFault[]> {
  const { standby, proxy, loads, observer, schedule, durationMs, loadStarted, done, say } = options;
  const injected: InjectedReplicaFault[] = [];
  for (const [i, fault] of schedule.entries()) {
    const wait = loadStarted + fault.at * durationMs - Date.now();
    if (wait > 0) await sleep(wait);
    if (done()) break;
    const nextAt = loadStarted + (schedule[i + 1]?.at ?? 1) * durationMs;
    for (const load of loads) load.count(load.faults, `replica:${fault.kind}`);
    const startedAt = Date.now();
    say(`replica: ${fault.kind} for ${fault.durationMs / 1000} s`);
    if (fault.kind === 'stopped') {
      await standby.stop();
      await sleep(Math.max(0, startedAt + fault.durationMs - Date.now()));
      await standby.start();
    } else if (fault.kind === 'silent') {
      proxy.silent();
      await sleep(fault.durationMs);
      proxy.pass();
    } else {
      await queryOnce(standby.url(), 'SELECT pg_wal_replay_pause()');
      await sleep(fault.durationMs);
      await queryOnce(standby.url(), 'SELECT pg_wal_replay_resume()');
    }
    const endedAt = Date.now();
    injected.push({ kind: fault.kind, startedAt, endedAt, nextAt: Math.max(nextAt, endedAt) });
    const marked = [...observer.samples.values()].map((list) => list.find((s) => s.at >= startedAt && s.state === expectedState(fault.kind)));
    const backMs = await observer.until('up', endedAt, Math.max(2_000, nextAt - Date.now() - 500));
    say(
      `replica back after ${fault.kind}: seen ${expectedState(fault.kind)} after ${JSON.stringify(marked.map((s) => (s ? s.at - startedAt : null)))} ms; all apps see it up ${backMs ?? 'never (within the window)'} ms after`,
    );
  }
  return injected;
}

/**
 * A fourth shop started with `DB_REPLICA_FALLBACK=error`, not loaded: one `GET /items/:id` every
 * 100 ms, each between two `/stats` reads of its replica's state.
 */
export class FallbackErrorShop {
  readonly probes: FallbackErrorProbe[] = [];
  private running: Promise<void> | undefined;

  constructor(
    readonly shop: ShopProcess,
    private readonly itemId: number,
  ) {}

  start(done: () => boolean): void {
    this.running = (async () => {
      const state = async () => {
        const r = await send({ port: this.shop.port, path: '/stats', timeoutMs: 2_000 });
        return (r.body as { pools?: { replicas?: Array<{ state: string }> } } | undefined)?.pools?.replicas?.[0]?.state ?? 'unknown';
      };
      for (let i = 0; i < 1_000_000 && !done(); i++) {
        const before = await state();
        const r = await send({ port: this.shop.port, path: `/items/${this.itemId}`, timeoutMs: 10_000 });
        const after = await state();
        const retryAfter = r.headers?.['retry-after'];
        const error = (r.body as { error?: unknown } | undefined)?.error;
        this.probes.push({
          startedAt: r.startedAt,
          ms: Math.round(r.ms),
          status: r.status,
          error: typeof error === 'string' ? error : undefined,
          retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
          before,
          after,
        });
        await sleep(100);
      }
    })();
  }

  async stop(): Promise<void> {
    await this.running;
  }
}

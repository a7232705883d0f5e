import { Agent } from 'node:http';
import type pg from 'pg';
import { label, send, sleep, type HttpResult } from './http.js';
import type { ReadAfterWrite } from './replica-checks.js';
import type { AppName, ShopProcess } from './shops.js';

export const FAIL_POINTS = ['after-stock', 'after-order', 'after-payment', 'commit'] as const;

/** One purchase as the client made it; `kind: 'marker'` buys its own dedicated item, `'hot'` a shared one. */
export interface Purchase {
  app: AppName;
  kind: 'marker' | 'hot';
  itemId: number;
  quantity: number;
  failAt?: (typeof FAIL_POINTS)[number];
  /** Client disconnect: when (ms after sending) and the phase it aimed at. */
  abort?: { afterMs: number; phase: 'before' | 'during' | 'after' };
  result: HttpResult;
  /** `id` of a 201 body. */
  orderId?: number;
}

/** One finished request, for the time-window invariants (network faults). */
export interface RequestLog {
  route: string;
  startedAt: number;
  ms: number;
  status?: number;
  /** `error` of a JSON error body. */
  error?: string;
  /** The request was made to fail (`x-fail-at`) or cut by the client on purpose. */
  expected: boolean;
}

/** Everything the load generator did and saw for one app. */
export class AppLoad {
  readonly statuses = new Map<string, number>();
  readonly faults = new Map<string, number>();
  readonly purchases: Purchase[] = [];
  readonly orderIds: number[] = [];
  readonly log: RequestLog[] = [];
  /** 5xx answers by status and error code (`503 database_unavailable`: a reply deadline). */
  readonly errors = new Map<string, number>();
  /** `--replica`: the reads of an order right after its 201, with or without its commit position. */
  readonly readsAfterWrite: ReadAfterWrite[] = [];
  readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private latencies: number[] = [];

  constructor(
    readonly app: AppName,
    readonly shop: ShopProcess,
    readonly markerItems: number[],
    readonly hotItems: number[],
    readonly allItems: number[],
  ) {}

  count(map: Map<string, number>, key: string, n = 1): void {
    map.set(key, (map.get(key) ?? 0) + n);
  }

  record(route: string, result: HttpResult, expected = false): HttpResult {
    this.count(this.statuses, label(result));
    const error = (result.body as { error?: unknown } | undefined)?.error;
    if (result.status !== undefined && result.status >= 500) this.count(this.errors, `${result.status} ${typeof error === 'string' ? error : '?'}`);
    this.log.push({
      route,
      startedAt: result.startedAt,
      ms: result.ms,
      status: result.status,
      error: typeof error === 'string' ? error : undefined,
      expected: expected || result.failure === 'aborted',
    });
    return result;
  }

  /** Median latency of recent complete purchases (ms), used to aim disconnects. */
  medianLatency(): number {
    if (this.latencies.length === 0) return 20;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return sorted[Math.floor(sorted.length / 2)] ?? 20;
  }

  noteLatency(ms: number): void {
    this.latencies.push(ms);
    if (this.latencies.length > 200) this.latencies.shift();
  }
}

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
const between = (min: number, max: number) => min + Math.random() * (max - min);

/** A purchase: a dedicated marker item (may carry a fault and a disconnect) or a hot item (may carry a fault, never a disconnect). */
export async function purchase(load: AppLoad, options: { faults: boolean; aborts: boolean }): Promise<Purchase> {
  // a quarter of the purchases compete for the app's two hot items (row locks, oversell guard, 409 once sold out)
  const markerItem = Math.random() < 0.25 ? undefined : load.markerItems.pop();
  const kind = markerItem !== undefined ? 'marker' : 'hot';
  const itemId = markerItem ?? pick(load.hotItems);
  // marker items hold 3: quantity 4 is refused with 409 (a 4xx that must leave nothing behind)
  const quantity = kind === 'marker' ? (Math.random() < 0.12 ? 4 : 1 + Math.floor(Math.random() * 3)) : 1 + Math.floor(Math.random() * 3);
  const p: Purchase = { app: load.app, kind, itemId, quantity, result: { complete: false, ms: 0, startedAt: Date.now() } };
  if (options.faults && Math.random() < (kind === 'marker' ? 0.3 : 0.15)) {
    p.failAt = pick(FAIL_POINTS);
    load.count(load.faults, `x-fail-at:${p.failAt}`);
  }
  if (options.aborts && kind === 'marker' && Math.random() < 0.3) {
    const median = load.medianLatency();
    const phase = pick(['before', 'during', 'after'] as const);
    const afterMs = phase === 'before' ? between(0, 2) : phase === 'during' ? between(median * 0.2, median * 0.9) : between(median * 0.9, median * 1.8);
    p.abort = { afterMs, phase };
    load.count(load.faults, `disconnect:${phase}`);
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (p.failAt) headers['x-fail-at'] = p.failAt;
  p.result = load.record(
    'POST /orders',
    await send({
      port: load.shop.port,
      method: 'POST',
      path: '/orders',
      headers,
      body: JSON.stringify({ itemId, quantity }),
      abortAfterMs: p.abort?.afterMs,
      timeoutMs: 30_000,
      agent: p.abort ? undefined : load.agent,
    }),
    p.failAt !== undefined,
  );
  if (p.result.complete && p.result.status === 201) {
    const id = (p.result.body as { id?: unknown } | undefined)?.id;
    if (typeof id === 'number') {
      p.orderId = id;
      load.orderIds.push(id);
    }
    if (!p.failAt) load.noteLatency(p.result.ms);
  }
  load.purchases.push(p);
  return p;
}

/** Reads and cheap routes. */
export async function read(load: AppLoad): Promise<void> {
  const r = Math.random();
  let path = '/health';
  if (r < 0.45) path = `/items/${pick(load.allItems)}`;
  else if (r < 0.75 && load.orderIds.length > 0) path = `/orders/${pick(load.orderIds)}`;
  else if (r < 0.85) path = '/receipts';
  else if (r < 0.92) path = '/ping';
  load.record(
    path.startsWith('/items/') ? 'GET /items/:id' : path.startsWith('/orders/') ? 'GET /orders/:id' : `GET ${path}`,
    await send({ port: load.shop.port, path, agent: load.agent, timeoutMs: 30_000 }),
  );
}

/**
 * `--replica`: read the order a 201 just created through the read-only route, sending back the
 * commit position it answered with (`x-sessionlocal-lsn` header or the `sl_lsn` cookie, half
 * each); one in ten sends nothing (the control: such a read may miss on a lagging replica).
 */
export async function readAfterWrite(load: AppLoad, p: Purchase): Promise<void> {
  if (p.orderId === undefined) return;
  const lsnHeader = p.result.headers?.['x-sessionlocal-lsn'];
  const lsn = typeof lsnHeader === 'string' ? lsnHeader : undefined;
  const cookie = p.result.headers?.['set-cookie']?.find((c) => c.startsWith('sl_lsn='))?.split(';')[0];
  const r = Math.random();
  const carrier: ReadAfterWrite['carrier'] = r < 0.1 || (!lsn && !cookie) ? 'none' : r < 0.55 && lsn ? 'header' : cookie ? 'cookie' : 'header';
  const headers: Record<string, string> = {};
  if (carrier === 'header' && lsn) headers['x-sessionlocal-lsn'] = lsn;
  if (carrier === 'cookie' && cookie) headers.cookie = cookie;
  const result = load.record('GET /orders/:id (after write)', await send({ port: load.shop.port, path: `/orders/${p.orderId}`, headers, agent: load.agent, timeoutMs: 30_000 }));
  const id = (result.body as { id?: unknown } | undefined)?.id;
  load.readsAfterWrite.push({
    orderId: p.orderId,
    carrier,
    status: result.complete ? result.status : undefined,
    foundId: typeof id === 'number' ? id : undefined,
    startedAt: result.startedAt,
    ms: result.ms,
  });
}

/** `GET /sleep` holding a connection; sometimes the client leaves mid-sleep. */
export async function sleeper(load: AppLoad, aborts: boolean): Promise<void> {
  const ms = Math.floor(between(20, 150));
  let abortAfterMs: number | undefined;
  if (aborts && Math.random() < 0.25) {
    abortAfterMs = between(1, ms);
    load.count(load.faults, 'disconnect:sleep');
  }
  load.record(
    'GET /sleep',
    await send({ port: load.shop.port, path: `/sleep?ms=${ms}`, abortAfterMs, timeoutMs: 30_000, agent: abortAfterMs === undefined ? load.agent : undefined }),
    abortAfterMs !== undefined,
  );
}

/** A worker: a bounded loop of mixed requests until `stop()` says so. */
export async function worker(load: AppLoad, stop: () => boolean, options: { faults: boolean; aborts: boolean; readAfterWrite?: boolean }): Promise<void> {
  for (let i = 0; i < 1_000_000 && !stop(); i++) {
    const r = Math.random();
    if (r < 0.55) {
      const p = await purchase(load, options);
      if (options.readAfterWrite && p.result.complete && p.result.status === 201) await readAfterWrite(load, p);
    } else if (r < 0.85) await read(load);
    else await sleeper(load, options.aborts);
    await sleep(Math.random() * 8);
  }
}

/** Fire `size` concurrent `/sleep?ms=holdMs` at one app: more than the pool (5) can hold within the acquire timeout (500 ms). */
export async function burst(load: AppLoad, size: number, holdMs: number): Promise<number> {
  load.count(load.faults, 'pool-burst');
  const results = await Promise.all(Array.from({ length: size }, () => send({ port: load.shop.port, path: `/sleep?ms=${holdMs}`, timeoutMs: 30_000 })));
  let busy = 0;
  for (const result of results) {
    load.record('GET /sleep (burst)', result, true);
    if (result.status === 503) busy++;
  }
  load.count(load.faults, 'pool-burst:503s', busy);
  return busy;
}

/** Terminate one random backend of the apps (never the admin's own); returns the app and the backend's state. */
export async function terminateOne(admin: pg.Pool, filter: { applicationNames?: string[]; minAgeMs?: number }): Promise<{ app: string; state: string } | undefined> {
  const rows = (
    await admin.query<{ pid: number; app: string; state: string | null }>(
      `SELECT pid, application_name AS app, state FROM pg_stat_activity
        WHERE datname = 'chaos' AND usename = 'shop' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
          AND ($1::text[] IS NULL OR application_name = ANY($1::text[]))
          AND backend_start < now() - make_interval(secs => $2::int / 1000.0)
        ORDER BY random() LIMIT 1`,
      [filter.applicationNames ?? null, filter.minAgeMs ?? 0],
    )
  ).rows;
  const row = rows[0];
  if (!row) return undefined;
  const killed = await admin.query<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [row.pid]);
  if (!killed.rows[0]?.ok) return undefined;
  return { app: row.app, state: row.state ?? 'unknown' };
}

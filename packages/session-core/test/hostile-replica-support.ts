import { QueryTypes, type Transaction } from 'sequelize';
import { createEngine, type Engine, type EngineOptions, type ReplicaStats } from '../src/index.js';
import type { ReplicaServer, StreamingReplica } from '../src/testing/index.js';

/**
 * Helpers of the hostile-replica tests (an independent second opinion on the documented replica
 * contracts: docs/production.md "Read replicas", docs/semantics.md rules 14-15). Every test runs
 * against a real primary and a real hot standby streaming from it (`startStreamingReplica()`).
 */

/** Which server answered: the standby (`pg_is_in_recovery()`) and its port. */
export interface Served {
  standby: boolean;
  port: number;
}

export const SERVED_SQL = 'SELECT pg_is_in_recovery() AS standby, inet_server_port() AS port';

/** Run the "which server is this" query in the current scope (session or not). */
export async function served(engine: Engine, options: { transaction?: Transaction | null } = {}): Promise<Served> {
  const rows = await engine.sequelize.query<Served>(SERVED_SQL, { type: QueryTypes.SELECT, ...options });
  const row = rows[0];
  if (!row) throw new Error('no row');
  return { standby: row.standby, port: Number(row.port) };
}

/** Engines made by a test, disposed after it. */
export class Engines {
  private readonly list: Engine[] = [];

  make(url: string, options: EngineOptions): Engine {
    const engine = createEngine(url, { applicationName: APP, ...options });
    this.list.push(engine);
    return engine;
  }

  async disposeAll(): Promise<void> {
    const list = this.list.splice(0);
    await Promise.all(list.map((e) => e.dispose({ timeoutMs: 2_000 }).catch(() => undefined)));
  }
}

/** application_name of every engine of these tests: how their backends are found on the servers. */
export const APP = 'hostile-replica';

/** Poll `probe` until it returns a value other than undefined/false, or throw after `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => T | undefined | false | Promise<T | undefined | false>, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as T;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(everyMs);
  }
}

/** The engine's only replica as `stats()` shows it. */
export function replicaStats(engine: Engine, index = 0): ReplicaStats {
  const replica = engine.stats().pools?.replicas[index];
  if (!replica) throw new Error('stats().pools.replicas is missing');
  return replica;
}

/** Wait until the engine sees replica `index` in `state` (a fresh engine starts `unknown`). */
export function waitForState(engine: Engine, state: ReplicaStats['state'], timeoutMs = 15_000, index = 0): Promise<ReplicaStats> {
  return waitFor(`replica ${index} to be ${state} (now ${replicaStats(engine, index).state})`, timeoutMs, () => {
    const r = replicaStats(engine, index);
    return r.state === state ? r : undefined;
  });
}

/** Client backends of these tests on `server` (not the health-check connections unless asked). */
export async function backends(server: ReplicaServer, options: { checks?: boolean } = {}): Promise<Array<{ state: string | null; application_name: string }>> {
  const names = options.checks ? `application_name LIKE '${APP}%'` : `application_name = '${APP}'`;
  return server.query(`SELECT state, application_name FROM pg_stat_activity WHERE backend_type = 'client backend' AND ${names}`);
}

/** Wait until no backend of these tests is idle in transaction (or active) on either server. */
export async function noneInTransaction(pair: StreamingReplica, timeoutMs = 5_000): Promise<void> {
  for (const server of [pair.primary, pair.standby]) {
    if (!server.running) continue;
    await waitFor(`no backend of ${APP} idle in transaction on port ${server.port}`, timeoutMs, async () => {
      const rows = await backends(server);
      return rows.every((r) => r.state === 'idle') ? true : undefined;
    });
  }
}

export async function elapsed<T>(fn: () => Promise<T>): Promise<{ ms: number; value?: T; error?: unknown }> {
  const started = performance.now();
  try {
    const value = await fn();
    return { ms: performance.now() - started, value };
  } catch (error) {
    return { ms: performance.now() - started, error };
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Everything an error shows: message, stack, causes, JSON. */
export function everything(value: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  const visit = (v: unknown, depth: number) => {
    if (depth > 6 || v === null || v === undefined || seen.has(v)) return;
    if (typeof v !== 'object') {
      parts.push(String(v));
      return;
    }
    seen.add(v);
    const e = v as Record<string, unknown>;
    for (const key of ['message', 'stack']) if (typeof e[key] === 'string') parts.push(e[key] as string);
    try {
      parts.push(JSON.stringify(v));
    } catch {
      // circular
    }
    for (const key of ['cause', 'parent', 'original', 'replicas', 'errors']) visit(e[key], depth + 1);
    if (Array.isArray(v)) for (const item of v) visit(item, depth + 1);
  };
  visit(value, 0);
  return parts.join('\n');
}

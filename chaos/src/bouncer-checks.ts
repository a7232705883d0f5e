import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import type pg from 'pg';
import type { Verdict } from './checks.js';
import { sleep } from './http.js';
import { Bouncer } from './pgbouncer.js';
import type { Cluster } from './postgres.js';
import { freePort } from './shops.js';

export interface BouncerReport {
  verdicts: Verdict[];
  facts: Record<string, unknown>;
}

const TENANTS = ['acme', 'globex', 'initech', 'umbrella'];
const ROWS_PER_TENANT = 5;

/** The first SQLSTATE / message found along `cause`, `parent`, `original`. */
export function sqlState(error: unknown): { code?: string; message: string } {
  let current = error;
  const message = error instanceof Error ? error.message : String(error);
  for (let i = 0; i < 6 && current && typeof current === 'object'; i++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) return { code, message: (current as Error).message ?? message };
    const next = current as { cause?: unknown; parent?: unknown; original?: unknown };
    current = next.parent ?? next.original ?? next.cause;
  }
  return { message };
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ok: true; value: T; ms: number } | { ok: false; error: { code?: string; message: string }; ms: number }> {
  const started = performance.now();
  try {
    const value = await fn();
    return { ok: true, value, ms: Math.round(performance.now() - started) };
  } catch (error) {
    return { ok: false, error: sqlState(error), ms: Math.round(performance.now() - started) };
  }
}

/** Run `tasks` with at most `limit` at once. */
async function pool<T>(tasks: Array<() => Promise<T>>, limit: number): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await tasks[i]!();
      }
    }),
  );
  return results;
}

/**
 * Behind PgBouncer in transaction pooling mode (SPEC §2 rule 10): per-request `settings` stay
 * with their transaction (RLS isolation holds while client connections share two server
 * connections), `statement_timeout` given as a setting is enforced and does not leak, and what
 * happens to `statementTimeoutMs` (a startup parameter) with and without `ignore_startup_parameters`.
 */
export async function runBouncerChecks(ctx: { cluster: Cluster; admin: pg.Pool; bouncer: Bouncer; binary: string; track: (b: Bouncer) => void }): Promise<BouncerReport> {
  const { admin, bouncer } = ctx;
  const verdicts: Verdict[] = [];
  const facts: Record<string, unknown> = {};
  await admin.query('CREATE TABLE tenant_notes (id serial PRIMARY KEY, tenant text NOT NULL, note text NOT NULL)');
  await admin.query('ALTER TABLE tenant_notes ENABLE ROW LEVEL SECURITY');
  await admin.query("CREATE POLICY tenant_isolation ON tenant_notes USING (tenant = current_setting('app.tenant_id', true))");
  await admin.query('GRANT SELECT ON tenant_notes TO tenant');
  await admin.query(`INSERT INTO tenant_notes (tenant, note) SELECT t, t || ' note ' || g FROM unnest($1::text[]) t, generate_series(1, ${ROWS_PER_TENANT}) g`, [TENANTS]);
  const url = (port: number) => `postgres://tenant:tenant-secret@127.0.0.1:${port}/chaos_small`;
  const engines: Engine[] = [];
  const engine = (port: number, options: Parameters<typeof createEngine>[1] = {}) => {
    const e = createEngine(url(port), { pool: { max: 8, acquireTimeoutMs: 10_000 }, ...options });
    engines.push(e);
    return e;
  };

  try {
    // 1. settings + RLS: 120 sessions, 8 client connections, 2 server connections (pool_size=2)
    {
      const e = engine(bouncer.port);
      const SessionLocal = sessionmaker(e);
      const pids = new Set<number>();
      const bad: unknown[] = [];
      const tasks = Array.from({ length: 120 }, (_, i) => async () => {
        const tenant = i % 5 === 4 ? undefined : TENANTS[i % 4]!;
        const session = SessionLocal(tenant ? { settings: { 'app.tenant_id': tenant } } : {});
        try {
          await session.run(async () => {
            for (let round = 0; round < 2; round++) {
              const [row] = await e.sequelize.query<{ t: string | null; pid: number; tenants: string[]; n: number }>(
                "SELECT current_setting('app.tenant_id', true) AS t, pg_backend_pid() AS pid, (SELECT coalesce(array_agg(DISTINCT tenant), '{}') FROM tenant_notes) AS tenants, (SELECT count(*)::int FROM tenant_notes) AS n",
                { type: 'SELECT' as never },
              );
              if (!row) throw new Error('no row');
              pids.add(row.pid);
              const expected = tenant ? { t: tenant, n: ROWS_PER_TENANT, tenants: [tenant] } : { t: '', n: 0, tenants: [] };
              if ((row.t ?? '') !== expected.t || row.n !== expected.n || JSON.stringify(row.tenants) !== JSON.stringify(expected.tenants)) bad.push({ tenant, round, row });
              if (round === 0) await e.sequelize.query('SELECT pg_sleep(0.003)', { type: 'SELECT' as never });
            }
          });
          await session.commit();
        } catch (error) {
          bad.push({ tenant, error: sqlState(error) });
        } finally {
          await session.close();
        }
      });
      await pool(tasks, 8);
      facts.settingsRls = { sessions: tasks.length, clientConnections: 8, serverBackendsSeen: pids.size, violations: bad.length, examples: bad.slice(0, 5) };
      verdicts.push({
        app: 'pgbouncer',
        name: 'settings + RLS isolation in transaction pooling',
        pass: bad.length === 0,
        detail: `${tasks.length} sessions (4 tenants + none) on ${pids.size} server backends: ${bad.length} saw another tenant's setting or rows`,
        examples: bad.slice(0, 5),
      });
    }

    // 2. statement_timeout as a transaction-local setting (SET LOCAL via set_config(..., true))
    {
      const e = engine(bouncer.port);
      const SessionLocal = sessionmaker(e);
      const limited = SessionLocal({ settings: { statement_timeout: '200' } });
      const cut = await timed(() => limited.run(async () => e.sequelize.query('SELECT pg_sleep(1)', { type: 'SELECT' as never })));
      await limited.close();
      const leaks: string[] = [];
      await pool(
        Array.from({ length: 12 }, () => async () => {
          await SessionLocal.begin(async () => {
            const [row] = await e.sequelize.query<{ statement_timeout: string }>('SHOW statement_timeout', { type: 'SELECT' as never });
            if (row?.statement_timeout !== '0') leaks.push(String(row?.statement_timeout));
          });
        }),
        4,
      );
      facts.statementTimeoutSetting = { result: cut, laterSessionsWithNonDefaultTimeout: leaks };
      verdicts.push({
        app: 'pgbouncer',
        name: 'statement_timeout via settings enforced, never leaks',
        pass: !cut.ok && cut.error.code === '57014' && leaks.length === 0,
        detail: `${cut.ok ? `pg_sleep(1) NOT cut (${cut.ms} ms)` : `pg_sleep(1) cut after ${cut.ms} ms with ${cut.error.code}`}; ${leaks.length}/12 later sessions saw a non-default statement_timeout`,
      });
    }

    // 3. statementTimeoutMs = a startup parameter: default PgBouncer config
    const startupProbe = async (port: number) => {
      const e = engine(port, { statementTimeoutMs: 200, idleInTransactionTimeoutMs: 1_000 });
      const SessionLocal = sessionmaker(e);
      return timed(() => SessionLocal.begin(async () => e.sequelize.query('SELECT pg_sleep(1)', { type: 'SELECT' as never })));
    };
    const plain = await startupProbe(bouncer.port);
    facts.statementTimeoutMsDefault = plain;
    // 4. the same with ignore_startup_parameters = statement_timeout, idle_in_transaction_session_timeout
    const lenient = new Bouncer({ ...bouncer.options, port: await freePort(), ignoreStartupParameters: 'statement_timeout,idle_in_transaction_session_timeout' });
    ctx.track(lenient);
    await lenient.start();
    const ignored = await startupProbe(lenient.port);
    facts.statementTimeoutMsIgnoreStartupParameters = ignored;
    await lenient.stop();
    const loud = (r: typeof plain) =>
      !r.ok && r.error.code === '57014' ? 'enforced (57014)' : !r.ok ? `refused: ${r.error.code ?? ''} ${r.error.message}` : `NOT enforced: pg_sleep(1) ran ${r.ms} ms`;
    verdicts.push({
      app: 'pgbouncer',
      name: 'statementTimeoutMs never silently dropped (default config)',
      pass: !plain.ok,
      detail: `default: ${loud(plain)}`,
    });
    facts.statementTimeoutMsSummary = { default: loud(plain), ignoreStartupParameters: loud(ignored) };

    // 5. idle_in_transaction_session_timeout as a setting: the server cuts an idle transaction
    {
      const e = engine(bouncer.port);
      const SessionLocal = sessionmaker(e);
      const idle = await timed(() =>
        SessionLocal.begin(async () => {
          await e.sequelize.query("SELECT set_config('idle_in_transaction_session_timeout', '300', true)", { type: 'SELECT' as never });
          await sleep(1_000);
          await e.sequelize.query('SELECT 1', { type: 'SELECT' as never });
        }),
      );
      const after = await timed(() => SessionLocal.begin(async () => e.sequelize.query('SELECT 1 AS ok', { type: 'SELECT' as never })));
      facts.idleInTransactionSetting = { idle, nextSession: after };
      verdicts.push({
        app: 'pgbouncer',
        name: 'idle_in_transaction timeout via settings cuts, pool recovers',
        pass: !idle.ok && after.ok,
        detail: `idle transaction: ${idle.ok ? 'NOT cut' : `cut (${idle.error.code ?? ''} ${idle.error.message.slice(0, 80)})`}; next session ${after.ok ? 'ok' : 'failed'}`,
      });
    }
  } finally {
    await Promise.all(engines.map((e) => e.dispose({ timeoutMs: 2_000 }).catch(() => {})));
  }
  return { verdicts, facts };
}

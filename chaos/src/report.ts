import type { Verdict } from './checks.js';

interface AppSummary {
  requests: Record<string, number>;
  errors?: Record<string, number>;
  faults: Record<string, number>;
  purchases: Record<string, number>;
}

interface Summary {
  pass: boolean;
  mode: string;
  loadMs: number;
  postgresRestart: unknown;
  terminationsByBackendState: Record<string, number>;
  apps: Record<string, AppSummary>;
  invariants: Verdict[];
  pgbouncer?: { statementTimeoutMsSummary?: Record<string, string> };
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** Print the per-app tables (requests by status, faults by kind) and the invariants, PASS/FAIL with numbers. */
export function printSummary(summary: Summary): void {
  const apps = Object.keys(summary.apps);
  const keys = (pick: (a: AppSummary) => Record<string, number>) => [...new Set(apps.flatMap((app) => Object.keys(pick(summary.apps[app]!))))].sort();
  const grid = (pick: (a: AppSummary) => Record<string, number>) => keys(pick).map((key) => [key, ...apps.map((app) => String(pick(summary.apps[app]!)[key] ?? 0))]);
  console.log(`\nchaos run (${summary.mode}, load ${(summary.loadMs / 1000).toFixed(1)} s)\n`);
  console.log('Requests by status');
  console.log(
    table(
      ['status', ...apps],
      grid((a) => a.requests),
    ),
  );
  console.log('\n5xx answers by error code');
  console.log(
    table(
      ['answer', ...apps],
      grid((a) => a.errors ?? {}),
    ),
  );
  console.log('\nFaults injected');
  console.log(
    table(
      ['fault', ...apps],
      grid((a) => a.faults),
    ),
  );
  console.log('\nPurchase outcomes');
  console.log(
    table(
      ['purchases', ...apps],
      grid((a) => a.purchases),
    ),
  );
  const restart = summary.postgresRestart as { stopMs?: number; upAt?: number } | null;
  console.log(`\npg_terminate_backend by backend state: ${JSON.stringify(summary.terminationsByBackendState)}`);
  console.log(`PostgreSQL restart: ${restart ? JSON.stringify(restart) : 'off'}\n`);
  if (summary.pgbouncer?.statementTimeoutMsSummary) {
    const st = summary.pgbouncer.statementTimeoutMsSummary;
    console.log(`PgBouncer, statementTimeoutMs (a startup parameter): default config: ${st.default}; with ignore_startup_parameters=statement_timeout: ${st.ignoreStartupParameters}\n`);
  }
  console.log('Invariants');
  console.log(
    table(
      ['', 'app', 'invariant', 'numbers'],
      summary.invariants.map((v) => [v.pass ? 'PASS' : 'FAIL', v.app, v.name, v.detail]),
    ),
  );
  for (const v of summary.invariants.filter((x) => !x.pass && x.examples?.length)) {
    console.log(`\nFAIL ${v.app} ${v.name}: examples ${JSON.stringify(v.examples).slice(0, 2000)}`);
  }
  console.log('');
}

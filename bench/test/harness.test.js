import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { openBenchDatabase, tenantOf } from '../src/database.js';
import { runBench } from '../src/harness.js';
import { resolveNode } from '../src/node-binary.js';
import { renderMarkdown, renderSvg } from '../src/report.js';
import { checkTargets, summarise } from '../src/summary.js';

// Not a timed test: it runs the real harness on one small cell so the harness cannot rot.
describe('the benchmark harness', () => {
  it('runs express × sessionlocal × /rls/items/:id (settings per request) for 1 s at 8 connections without errors', async () => {
    const plan = { frameworks: ['express'], variants: ['sessionlocal'], routes: ['/rls/items/:id'], rounds: 1, durationS: 1, warmupS: 0.2, dbLoads: [8], pingLoads: [8], memory: false };
    const results = await runBench(plan);
    expect(results.unavailable).toEqual([]);
    expect(results.machine.serverNode).toBe(process.version);
    expect(results.cells).toHaveLength(1);
    const [cell] = results.cells;
    expect(cell).toMatchObject({ framework: 'express', variant: 'sessionlocal', route: '/rls/items/:id', connections: 8, round: 1, errors: 0, timeouts: 0, non2xx: 0 });
    expect(cell.requests).toBeGreaterThan(0);
    expect(cell.reqPerSec).toBeGreaterThan(0);
    expect(cell.latencyMs.p99).toBeGreaterThanOrEqual(cell.latencyMs.p50);
    // 200 only: the policy let each request see its tenant's row (a missing setting would be 404s)
    expect(Object.keys(cell.statusCodes)).toEqual(['200']);
    // every request held a connection, measured inside the server
    expect(cell.hold.count).toBeGreaterThan(0);
    expect(cell.hold.meanMs).toBeGreaterThan(0);

    results.command = 'test';
    results.summary = summarise(results.cells);
    results.targets = checkTargets(results.summary, results.memory);
    expect(results.summary).toHaveLength(1);
    expect(results.summary[0]).toMatchObject({ variant: 'sessionlocal', rounds: 1, errors: 0, non2xx: 0 });
    expect(renderMarkdown(results)).toContain('| express | `/rls/items/:id` | 8 | **sessionlocal** |');
    expect(renderSvg(results)).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
  });

  it('runs express × sessionlocal-otel (the OpenTelemetry cell) × /orders for 1 s at 8 connections without errors', async () => {
    const plan = { frameworks: ['express'], variants: ['sessionlocal-otel'], routes: ['/orders'], rounds: 1, durationS: 1, warmupS: 0.2, dbLoads: [8], pingLoads: [8], memory: false };
    const results = await runBench(plan);
    expect(results.unavailable).toEqual([]);
    expect(results.cells).toHaveLength(1);
    expect(results.cells[0]).toMatchObject({ framework: 'express', variant: 'sessionlocal-otel', route: '/orders', errors: 0, timeouts: 0, non2xx: 0 });
    expect(results.cells[0].requests).toBeGreaterThan(0);
  });
});

describe('the benchmark database', () => {
  it('gives the servers a role that row-level security applies to: a tenant sees only its own tenant_items rows', async () => {
    const db = await openBenchDatabase();
    const client = new pg.Client({ connectionString: db.url });
    try {
      await client.connect();
      const { rows: me } = await client.query('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user');
      expect(me).toEqual([{ rolsuper: false, rolbypassrls: false }]);
      const visible = async (tenant) => {
        await client.query('BEGIN');
        try {
          if (tenant !== undefined) await client.query("SELECT set_config('app.tenant_id', $1, true)", [tenant]);
          return (await client.query('SELECT id, tenant_id FROM tenant_items ORDER BY id')).rows;
        } finally {
          await client.query('COMMIT');
        }
      };
      const seven = await visible('7');
      expect(seven.length).toBeGreaterThan(0);
      expect(seven.every((r) => r.tenant_id === 7 && tenantOf(r.id) === 7)).toBe(true);
      // no setting, and the setting emptied by the transaction that set it (NULLIF): nothing
      expect(await visible(undefined)).toEqual([]);
      // the owning tenant of a row is the one the load generator sends
      const [row] = (await visible(String(tenantOf(123)))).filter((r) => r.id === 123);
      expect(row).toEqual({ id: 123, tenant_id: tenantOf(123) });
    } finally {
      await client.end().catch(() => {});
      await db.close();
    }
  });
});

describe('--node', () => {
  it('accepts a path to a Node binary and reports its version', () => {
    expect(resolveNode(process.execPath)).toEqual({ path: process.execPath, version: process.version });
  });

  it('says how to install a major that is not there', () => {
    expect(() => resolveNode('99')).toThrow(/pnpm bench:node 99/);
    expect(() => resolveNode('/nonexistent/node')).toThrow(/--node \/nonexistent\/node: no such file/);
    // a binary that is not Node (it echoes its argument) is refused before any server starts
    expect(() => resolveNode('/bin/echo')).toThrow(/not a Node version/);
  });
});

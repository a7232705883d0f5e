import { describe, expect, it } from 'vitest';
import { runBench } from '../src/harness.js';
import { renderMarkdown, renderSvg } from '../src/report.js';
import { checkTargets, summarise } from '../src/summary.js';

// Not a timed test: it runs the real harness on one small cell so the harness cannot rot.
describe('the benchmark harness', () => {
  it('runs express × sessionlocal × /items/:id for 1 s at 8 connections without errors', async () => {
    const plan = { frameworks: ['express'], variants: ['sessionlocal'], routes: ['/items/:id'], rounds: 1, durationS: 1, warmupS: 0.2, dbLoads: [8], pingLoads: [8], memory: false };
    const results = await runBench(plan);
    expect(results.unavailable).toEqual([]);
    expect(results.cells).toHaveLength(1);
    const [cell] = results.cells;
    expect(cell).toMatchObject({ framework: 'express', variant: 'sessionlocal', route: '/items/:id', connections: 8, round: 1, errors: 0, timeouts: 0, non2xx: 0 });
    expect(cell.requests).toBeGreaterThan(0);
    expect(cell.reqPerSec).toBeGreaterThan(0);
    expect(cell.latencyMs.p99).toBeGreaterThanOrEqual(cell.latencyMs.p50);
    expect(Object.keys(cell.statusCodes)).toEqual(['200']);
    // every request held a connection, measured inside the server
    expect(cell.hold.count).toBeGreaterThan(0);
    expect(cell.hold.meanMs).toBeGreaterThan(0);

    results.command = 'test';
    results.summary = summarise(results.cells);
    results.targets = checkTargets(results.summary, results.memory);
    expect(results.summary).toHaveLength(1);
    expect(results.summary[0]).toMatchObject({ variant: 'sessionlocal', rounds: 1, errors: 0, non2xx: 0 });
    expect(renderMarkdown(results)).toContain('| express | `/items/:id` | 8 | **sessionlocal** |');
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

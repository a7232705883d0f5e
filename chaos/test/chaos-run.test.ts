import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';

const PKG = fileURLToPath(new URL('../', import.meta.url));

// The CI subset of `pnpm chaos`: 10 s of load with every fault except the PostgreSQL restart
// (that one runs in the default 60 s run). Same invariants, none loosened.
test('a 10 s chaos run keeps every invariant and exits 0', async () => {
  const out = `${PKG}results/tmp/ci-${process.pid}.json`;
  const child = spawn(process.execPath, [`${PKG}dist/main.js`, '--duration', '10', '--out', out], { cwd: PKG, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DATABASE_URL: '' } });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  if (code !== 0) console.log(output);
  expect(code).toBe(0);
  const result = JSON.parse(readFileSync(out, 'utf8')) as {
    pass: boolean;
    invariants: Array<{ pass: boolean; name: string; app: string }>;
    apps: Record<string, { requests: Record<string, number>; faults: Record<string, number> }>;
  };
  expect(result.pass).toBe(true);
  expect(result.invariants.filter((v) => !v.pass)).toEqual([]);
  expect(Object.keys(result.apps).sort()).toEqual(['express-shop', 'fastify-shop', 'koa-shop']);
  for (const app of Object.values(result.apps)) {
    expect(app.requests['201'] ?? 0).toBeGreaterThan(0);
    expect(Object.keys(app.faults).some((k) => k.startsWith('x-fail-at:'))).toBe(true);
    expect(Object.keys(app.faults).some((k) => k.startsWith('disconnect:'))).toBe(true);
  }
}, 240_000);

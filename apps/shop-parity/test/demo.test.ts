// `pnpm demo` as a person runs it: started through pnpm, stopped with Ctrl-C (SIGINT to the whole
// process group, as a terminal sends it). The shops stop, the demo exits 0 and so does pnpm, with
// no ELIFECYCLE. Uses the built shops (DEMO_SKIP_BUILD=1), a database of its own and free ports.
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sql } from './support/database.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
let db: TestDatabase;
let demo: ChildProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  if (demo?.pid && groupAlive(demo.pid)) process.kill(-demo.pid, 'SIGKILL');
  await db?.drop();
});

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A base port N with N, N+1 and N+2 free on 127.0.0.1. */
async function freePortBase(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    if ((await portFree(base)) && (await portFree(base + 1)) && (await portFree(base + 2))) return base;
  }
  throw new Error('no three consecutive free ports');
}

function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

it('pnpm demo, stopped with Ctrl-C (SIGINT to the process group), stops the shops and exits 0 through pnpm, no ELIFECYCLE', async () => {
  const base = await freePortBase();
  // detached: a process group of its own (setsid), like a terminal's foreground job
  demo = spawn('pnpm', ['demo'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEMO_SKIP_BUILD: '1', DEMO_PORT: String(base), DATABASE_URL: db.url } });
  let output = '';
  demo.stdout!.on('data', (chunk) => (output += chunk));
  demo.stderr!.on('data', (chunk) => (output += chunk));
  const exited = once(demo, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;

  const started = Date.now();
  while (!output.includes('Press Ctrl-C') && demo.exitCode === null && Date.now() - started < 60_000) await new Promise((resolve) => setTimeout(resolve, 50));
  expect(output, 'the demo did not come up').toContain('Press Ctrl-C');
  for (const port of [base, base + 1, base + 2]) expect((await fetch(`http://127.0.0.1:${port}/items`)).status).toBe(200);
  expect(await sql(db.url, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 3 }]);

  process.kill(-demo.pid!, 'SIGINT');
  const [code, signal] = await exited;
  expect(output).toContain('[demo] bye');
  expect(output).not.toContain('ELIFECYCLE');
  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(groupAlive(demo.pid!), 'a process of the demo outlived it').toBe(false);
  for (const port of [base, base + 1, base + 2]) expect(await portFree(port)).toBe(true);
});

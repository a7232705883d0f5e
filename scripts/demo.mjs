// `pnpm demo`: the three sample shops (Express, Koa, Fastify) on ports 3001-3003, one database.
// DATABASE_URL unset: one embedded PostgreSQL in a temporary directory, removed on Ctrl-C.
// Builds the shops and their workspace dependencies first (turbo: cached when nothing changed);
// DEMO_SKIP_BUILD=1 skips that; DEMO_PORT=N serves the shops on N, N+1, N+2 instead.
// Ctrl-C stops the shops and PostgreSQL and exits 0; the root script is `exec node ...` so that
// no `sh` stands between pnpm and this process (killed by the SIGINT, it made pnpm report
// ELIFECYCLE after a clean shutdown).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script, not by a turbo task
const BASE_PORT = Number(process.env.DEMO_PORT || 3001);
const SHOPS = [
  { name: 'express-shop', port: BASE_PORT },
  { name: 'koa-shop', port: BASE_PORT + 1 },
  { name: 'fastify-shop', port: BASE_PORT + 2 },
];
const [EXPRESS, KOA, FASTIFY] = SHOPS.map(({ port }) => `http://127.0.0.1:${port}`);
const SEED = [
  { name: 'Fountain pen', priceCents: 2500, stock: 10 },
  { name: 'Notebook', priceCents: 800, stock: 25 },
  { name: 'Desk lamp', priceCents: 4200, stock: 3 },
];
const STARTUP_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

const say = (line) => console.log(`[demo] ${line}`);
const children = [];
let embedded;
let domain;
let stopping = false;

function build() {
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script, not by a turbo task
  if (process.env.DEMO_SKIP_BUILD === '1') return;
  say('building the three shops and the packages they use (turbo; cached when nothing changed)...');
  const filters = SHOPS.map(({ name }) => `--filter=@sessionlocal/${name}`);
  const result = spawnSync('pnpm', ['exec', 'turbo', 'run', 'build', ...filters, '--output-logs=errors-only'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) throw new Error(`the build failed (exit ${result.status ?? result.signal}); fix it, then run pnpm demo again`);
  for (const { name } of SHOPS) {
    if (!existsSync(join(root, 'apps', name, 'dist', 'main.js'))) throw new Error(`apps/${name}/dist/main.js is missing after the build`);
  }
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function startShop({ name, port }, databaseUrl) {
  const child = spawn(process.execPath, [join(root, 'apps', name, 'dist', 'main.js')], {
    cwd: root,
    env: { ...process.env, PORT: String(port), DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within ${STARTUP_TIMEOUT_MS / 1000} s`)), STARTUP_TIMEOUT_MS);
    const onLine = (line) => {
      if (line.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    };
    const relay = (stream, write) => {
      let pending = '';
      stream.on('data', (chunk) => {
        pending += chunk.toString();
        const lines = pending.split('\n');
        pending = lines.pop() ?? '';
        for (const line of lines) {
          write(line);
          onLine(line);
        }
      });
    };
    relay(child.stdout, (line) => console.log(line));
    relay(child.stderr, (line) => console.error(line));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (${signal ?? code}) before listening`));
      if (!stopping) {
        console.error(`[demo] ${name} exited unexpectedly (${signal ?? code}); stopping the demo`);
        void shutdown(1);
      }
    });
  });
  return ready;
}

async function request(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(10_000),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${url}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

async function seed(base) {
  const { items } = await request('GET', `${base}/items`);
  if (items.length > 0) {
    say(`the database already has ${items.length} item(s); not seeding`);
    return items;
  }
  const created = [];
  for (const item of SEED) created.push(await request('POST', `${base}/items`, item));
  say(`seeded ${created.length} items`);
  return created;
}

function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

async function shutdown(code) {
  if (stopping) return;
  stopping = true;
  if (children.length > 0) say('stopping the shops...');
  await Promise.all(children.map(stopChild));
  if (embedded) {
    say('stopping the embedded PostgreSQL and removing its data directory...');
    await domain.stopEmbeddedDatabase(embedded);
    say(existsSync(embedded.dataDir) ? `could not remove ${embedded.dataDir}` : `removed ${embedded.dataDir}`);
  }
  say('bye');
  process.exit(code);
}

/**
 * Ctrl-C in a terminal reaches every process of the group, but `kill -INT <pnpm>` does not: pnpm
 * exits without forwarding it. Watch the launching processes and clean up when they are gone.
 */
function watchLauncher() {
  const launchers = [process.ppid];
  try {
    const stat = readFileSync(`/proc/${process.ppid}/stat`, 'utf8');
    const grandparent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (/\b(pnpm|npm|sh)\b/.test(stat.slice(0, stat.lastIndexOf(')'))) && grandparent > 1) launchers.push(grandparent);
  } catch {
    // no /proc: only the direct parent is watched
  }
  const alive = (pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch (error) {
      return error.code === 'EPERM';
    }
  };
  setInterval(() => {
    if (!stopping && (process.ppid !== launchers[0] || !launchers.every(alive))) {
      say('the process that started the demo went away');
      void shutdown(0);
    }
  }, 500).unref();
}

async function main() {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGHUP', () => void shutdown(0));
  watchLauncher();

  build();
  for (const { name, port } of SHOPS) {
    if (!(await portIsFree(port))) throw new Error(`port ${port} (for ${name}) is already in use; stop whatever runs there and try again`);
  }
  // The shared domain package holds the embedded-database helpers (resolved from an app, as pnpm links it there).
  const requireFromApp = createRequire(join(root, 'apps', 'express-shop', 'package.json'));
  domain = await import(pathToFileURL(requireFromApp.resolve('@sessionlocal/shop-domain')).href);

  let databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl) {
    say(`using DATABASE_URL (${databaseUrl.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')})`);
  } else {
    say('DATABASE_URL is not set: starting one embedded PostgreSQL for the three shops...');
    embedded = await domain.startEmbeddedDatabase();
    if (stopping) return;
    databaseUrl = embedded.url;
    say(`embedded PostgreSQL on 127.0.0.1:${embedded.port}, data in ${embedded.dataDir}`);
  }

  // biome-ignore lint/suspicious/noUndeclaredEnvVars: passed through to the shops, not a turbo task input
  const faults = process.env.SHOP_FAULTS === '1';
  await Promise.all(SHOPS.map((shop) => startShop(shop, databaseUrl)));
  if (stopping) return;
  const items = await seed(`http://127.0.0.1:${SHOPS[0].port}`);
  const first = items[0];

  console.log(`
  The shop is running three times, one database, one HTTP contract:

    Express   ${EXPRESS}
    Koa       ${KOA}
    Fastify   ${FASTIFY}

  Try:
    curl -s ${EXPRESS}/items
    curl -s -X POST ${KOA}/orders -H 'content-type: application/json' -d '{"itemId": ${first?.id ?? 1}, "quantity": 1}'
    curl -s ${FASTIFY}/items/${first?.id ?? 1}
    curl -s ${EXPRESS}/receipts
    curl -s ${FASTIFY}/stats
    curl -s -X POST ${EXPRESS}/items -H 'content-type: application/json' -d '{"name": "Mug", "priceCents": 1200, "stock": 5}'

  Routes: GET /ping /health /items /items/:id /orders/:id /receipts /sleep?ms=N /stats, POST /items /orders.
  ${faults ? 'SHOP_FAULTS=1: POST /orders honours x-fail-at: after-stock | after-order | after-payment | commit.' : 'Start with SHOP_FAULTS=1 pnpm demo to inject failures with the x-fail-at header.'}
  Press Ctrl-C to stop everything${embedded ? ' (the temporary database is deleted)' : ''}.
`);
}

main().catch(async (error) => {
  console.error(`[demo] ${error instanceof Error ? error.message : error}`);
  await shutdown(1);
});

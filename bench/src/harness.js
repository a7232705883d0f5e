// The benchmark harness: spawns one server process per framework × variant, loads it with
// autocannon from this process (127.0.0.1 only, every load bounded in time), reads the server's
// own hold-time and memory figures from its control port, and summarises medians over rounds.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { ITEM_COUNT, openBenchDatabase, tenantOf } from './database.js';

export const FRAMEWORKS = ['express', 'koa', 'fastify'];
export const VARIANTS = ['bare', 'raw-pg', 'sequelize-manual', 'sequelize-cls', 'fastify-postgres', 'sessionlocal', 'sessionlocal-deferred'];
/** `read-mostly` is a load, not a server route: per connection, 9 `GET /items/:id` then 1 `POST /orders`, in turn. */
export const ROUTES = ['/ping', '/items/:id', '/orders', '/rls/items/:id', 'read-mostly'];
export const DB_ROUTES = ['/items/:id', '/orders', '/rls/items/:id', 'read-mostly'];
const HOST = '127.0.0.1';
const SERVER_ENTRY = fileURLToPath(new URL('./server/main.js', import.meta.url));

/** What a full `pnpm bench` runs (see README "What `pnpm bench` runs"). */
export const FULL_PLAN = {
  frameworks: FRAMEWORKS,
  variants: VARIANTS,
  routes: ROUTES,
  rounds: 3,
  durationS: 5,
  warmupS: 1,
  dbLoads: [32, 256],
  pingLoads: [32],
  memory: { frameworks: ['express'], checkpoints: [10_000, 100_000], connections: 32 },
};

/** `--quick`: the same matrix, one round, 1 s cells, a small memory phase. */
export const QUICK_PLAN = {
  ...FULL_PLAN,
  rounds: 1,
  durationS: 1,
  warmupS: 0.5,
  memory: { frameworks: ['express'], checkpoints: [1_000, 10_000], connections: 32 },
};

/** Variants each framework has: `fastify-postgres` is Fastify only; `bare` serves /ping only. */
export function variantsFor(framework, variants) {
  return variants.filter((v) => (v !== 'fastify-postgres' || framework === 'fastify') && (v !== 'sessionlocal-otel' || framework !== 'fastify'));
}

/**
 * `bare` has only /ping; `raw-pg` and `fastify-postgres` serve /ping exactly as `bare` does (no
 * middleware), and `sessionlocal-deferred` exactly as `sessionlocal` (a request that never
 * queries opens nothing in either mode), so it is not measured again.
 */
function routesFor(variant, routes) {
  if (variant === 'bare') return routes.filter((r) => r === '/ping');
  if (variant === 'raw-pg' || variant === 'fastify-postgres') return routes.filter((r) => r !== '/ping');
  // deferredReads refuses settings (ConfigError: a read before BEGIN would run without them), and a
  // route cannot switch the mode off through the adapters' route options: no RLS route in that mode
  if (variant === 'sessionlocal-deferred') return routes.filter((r) => r !== '/ping' && r !== '/rls/items/:id');
  return routes;
}

// -- child processes ------------------------------------------------------------------------

const children = new Set();
let activeDb;

/** Stop everything this harness started: servers, then the benchmark database (signal handlers). */
export async function shutdown() {
  await killChildren(1000);
  await activeDb?.close();
}

/** Kill every server this harness started (SIGTERM, then SIGKILL after `graceMs`). */
export async function killChildren(graceMs = 2000) {
  await Promise.all([...children].map((child) => stopChild(child, graceMs)));
}

/** Synchronous last resort for `process.on('exit')`. */
export function killChildrenNow() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
}

function stopChild(child, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Start `framework` × `variant` as its own process. Resolves once it listens, with its ports,
 * `stats()`, `reset()`, `memory()` (after a forced GC when `exposeGc`) and `stop()`.
 */
export function startServer({ framework, variant, databaseUrl, nodePath = process.execPath, exposeGc = false, cpuProf, startTimeoutMs = 30_000 }) {
  const args = [];
  if (exposeGc) args.push('--expose-gc');
  if (cpuProf) args.push('--cpu-prof', `--cpu-prof-dir=${cpuProf}`);
  args.push(SERVER_ENTRY);
  const child = spawn(nodePath, args, {
    env: { ...process.env, DATABASE_URL: databaseUrl, BENCH_FRAMEWORK: framework, BENCH_VARIANT: variant },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    const fail = (message) => {
      clearTimeout(timer);
      void stopChild(child, 500);
      reject(new Error(`${framework} × ${variant}: ${message}\n${stderr.trim()}`));
    };
    const timer = setTimeout(() => fail(`not listening after ${startTimeoutMs} ms`), startTimeoutMs);
    child.once('exit', (code, signal) => fail(`exited (${code ?? signal}) before listening`));
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /BENCH_READY (\{.*\})/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.stdout.removeAllListeners('data');
      child.stdout.resume();
      const { port, controlPort, node, notes } = JSON.parse(match[1]);
      const control = (path) => getJson(`http://${HOST}:${controlPort}${path}`);
      resolve({
        port,
        pid: child.pid,
        node,
        notes: notes ?? [],
        stats: () => control('/stats'),
        reset: () => control('/reset'),
        memory: () => control('/memory'),
        stderr: () => stderr,
        stop: () => stopChild(child, 3000),
      });
    });
  });
}

async function getJson(url) {
  const response = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

// -- load -----------------------------------------------------------------------------------

const randomId = () => 1 + Math.floor(Math.random() * ITEM_COUNT);

/** autocannon request descriptions for a route (ids spread over all items). */
export function requestsFor(route) {
  if (route === '/ping') return [{ method: 'GET', path: '/ping' }];
  if (route === '/items/:id') return [{ method: 'GET', path: '/items/1', setupRequest: (req) => ({ ...req, path: `/items/${randomId()}` }) }];
  if (route === '/rls/items/:id') {
    // the tenant that owns the row, so every answer is a 200 (a wrong tenant would be a 404: the policy hides the row)
    return [
      {
        method: 'GET',
        path: '/rls/items/1',
        setupRequest: (req) => {
          const id = randomId();
          return { ...req, path: `/rls/items/${id}`, headers: { ...req.headers, 'x-tenant-id': String(tenantOf(id)) } };
        },
      },
    ];
  }
  if (route === 'read-mostly') return [...Array.from({ length: 9 }, () => requestsFor('/items/:id')[0]), ...requestsFor('/orders')];
  if (route === '/orders') {
    return [
      {
        method: 'POST',
        path: '/orders',
        headers: { 'content-type': 'application/json' },
        setupRequest: (req) => ({ ...req, body: JSON.stringify({ itemId: randomId(), quantity: 1 }) }),
      },
    ];
  }
  if (route === 'mixed') return [...requestsFor('/items/:id'), ...requestsFor('/orders'), ...requestsFor('/ping')];
  throw new Error(`unknown route ${route}`);
}

/**
 * One autocannon run against `port`: for `durationS` seconds, or until `amount` requests (then
 * stopped anyway after `maxS`). Returns the figures the report uses.
 */
export function load({ port, route, connections, durationS, amount, maxS = 600 }) {
  return new Promise((resolve, reject) => {
    const options = { url: `http://${HOST}:${port}`, connections, requests: requestsFor(route), timeout: 10 };
    if (amount) options.amount = amount;
    else options.duration = durationS;
    let guard;
    const instance = autocannon(options, (error, result) => {
      clearTimeout(guard);
      if (error) reject(error);
      else resolve(summariseLoad(result));
    });
    guard = setTimeout(() => instance.stop(), (amount ? maxS : durationS + 30) * 1000);
  });
}

function summariseLoad(result) {
  const statusCodes = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = count;
  return {
    requests: result.requests.total,
    durationS: result.duration,
    reqPerSec: Math.round(result.requests.total / result.duration),
    latencyMs: { mean: result.latency.average, p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
  };
}

// -- the run --------------------------------------------------------------------------------

/** The machine the numbers came from. */
export function machineInfo() {
  let cpu = cpus()[0]?.model ?? 'unknown';
  try {
    cpu = /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu;
  } catch {}
  return { nproc: cpus().length, cpu, node: process.version, platform: `${process.platform} ${process.arch}`, memoryGiB: Math.round(totalmem() / 2 ** 30) };
}

function rotate(list, by) {
  const k = list.length ? by % list.length : 0;
  return [...list.slice(k), ...list.slice(0, k)];
}

/**
 * Run a plan: for each round, each framework, each variant (rotated per round, so variants
 * interleave), start the server, then for each of its cells warm up, reset the server's
 * counters, load, read its stats. Then the memory phase. Returns the results object.
 */
export async function runBench(plan, { log = () => {}, databaseUrl, cpuProfDir } = {}) {
  const started = Date.now();
  const db = databaseUrl ? { url: databaseUrl, reset: async () => {}, close: async () => {} } : await openBenchDatabase({ log, onClose: (close) => (activeDb = { close }) });
  activeDb = db;
  const cells = [];
  const unavailable = [];
  const memory = [];
  const notes = [];
  const serverNodes = new Set();
  const nodePath = plan.nodePath ?? process.execPath;
  const note = (server, framework, variant) => {
    serverNodes.add(server.node);
    for (const text of server.notes) if (!notes.some((n) => n.framework === framework && n.variant === variant && n.note === text)) notes.push({ framework, variant, note: text });
  };
  try {
    for (let round = 1; round <= plan.rounds; round++) {
      await db.reset();
      for (const framework of plan.frameworks) {
        for (const variant of rotate(variantsFor(framework, plan.variants), round - 1)) {
          const routes = routesFor(variant, plan.routes);
          if (routes.length === 0 || unavailable.some((u) => u.framework === framework && u.variant === variant)) continue;
          let server;
          try {
            server = await startServer({ framework, variant, databaseUrl: db.url, nodePath, cpuProf: cpuProfDir });
            note(server, framework, variant);
          } catch (error) {
            log(`  ${framework} × ${variant}: unavailable (${firstLine(error)})`);
            unavailable.push({ framework, variant, reason: firstLine(error) });
            continue;
          }
          try {
            for (const route of routes) {
              for (const connections of route === '/ping' ? plan.pingLoads : plan.dbLoads) {
                const cell = await runCell(server, { framework, variant, route, connections, round }, plan);
                cells.push(cell);
                log(formatCell(cell));
              }
            }
          } finally {
            await server.stop();
          }
        }
      }
    }
    if (plan.memory) {
      for (const framework of plan.memory.frameworks.filter((f) => plan.frameworks.includes(f))) {
        const result = await runMemory(framework, db.url, plan.memory, nodePath);
        memory.push(result);
        log(
          `  memory ${framework} × sessionlocal: ${result.checkpoints.map((c) => `${c.requests} req → RSS ${mib(c.rssBytes)} MiB`).join(', ')} (${result.growthPct >= 0 ? '+' : ''}${result.growthPct}%)`,
        );
      }
    }
  } finally {
    await killChildren();
    await db.close();
    activeDb = undefined;
  }
  // machine.node is the harness (autocannon); machine.serverNode the Node the servers ran on
  const machine = { ...machineInfo(), serverNode: [...serverNodes].join(', ') || null, serverNodePath: nodePath };
  return { schema: 2, generatedAt: new Date().toISOString(), elapsedS: Math.round((Date.now() - started) / 1000), machine, plan, cells, unavailable, notes, memory };
}

async function runCell(server, key, plan) {
  const base = { port: server.port, route: key.route, connections: key.connections };
  if (plan.warmupS > 0) await load({ ...base, durationS: plan.warmupS });
  await server.reset();
  const result = await load({ ...base, durationS: plan.durationS });
  const stats = await server.stats();
  return { ...key, ...result, hold: stats.hold, rssBytes: stats.memory.rss };
}

/** RSS of the `sessionlocal` server after each checkpoint (total requests it served), after a forced GC. */
async function runMemory(framework, databaseUrl, { checkpoints, connections }, nodePath) {
  const server = await startServer({ framework, variant: 'sessionlocal', databaseUrl, nodePath, exposeGc: true });
  try {
    const points = [];
    let served = 0;
    for (const target of checkpoints) {
      await load({ port: server.port, route: 'mixed', connections, amount: target - served, maxS: 600 });
      const m = await server.memory();
      served = m.requests;
      points.push({ requests: m.requests, rssBytes: m.memory.rss, heapUsedBytes: m.memory.heapUsed, externalBytes: m.memory.external });
    }
    const first = points[0].rssBytes;
    const last = points[points.length - 1].rssBytes;
    return { framework, variant: 'sessionlocal', route: 'mixed (/items/:id, /orders, /ping in turn)', connections, checkpoints: points, growthPct: round1(((last - first) / first) * 100) };
  } finally {
    await server.stop();
  }
}

export function formatCell(c) {
  const codes = Object.entries(c.statusCodes)
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, n]) => `${code}×${n}`)
    .join(' ');
  const hold = c.hold.count ? ` hold ${c.hold.meanMs}ms` : '';
  return `  r${c.round} ${c.framework.padEnd(7)} ${c.variant.padEnd(21)} ${c.route.padEnd(14)} c=${String(c.connections).padEnd(3)} ${String(c.reqPerSec).padStart(6)} req/s p50 ${c.latencyMs.p50}ms p99 ${c.latencyMs.p99}ms err ${c.errors + c.timeouts}${codes ? ` ${codes}` : ''}${hold}`;
}

const firstLine = (error) => String(error?.message ?? error).split('\n')[0];
const mib = (bytes) => Math.round(bytes / 2 ** 20);
const round1 = (x) => Math.round(x * 10) / 10;

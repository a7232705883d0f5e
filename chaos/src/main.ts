// `pnpm chaos [--duration 60] [--restart|--no-restart] [--pgbouncer | --replica] [--workers 5] [--out results/latest.json]`
// The three sample shops on one embedded PostgreSQL (127.0.0.1 only), under mixed load and faults;
// invariants checked afterwards. Exit code 0 only when every invariant holds.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { runBouncerChecks, type BouncerReport } from './bouncer-checks.js';
import { checkApp, checkOrphanPayments, type PurchaseOutcomes, type Verdict } from './checks.js';
import { send, sleep, until } from './http.js';
import { AppLoad, burst, terminateOne, worker } from './load.js';
import { startFaultProxy, type FaultProxy } from '@sessionlocal/session-core/testing';
import { countStaleFailures, longestRequestVerdicts, NETWORK_SCHEDULE, networkVerdicts, runNetworkFaults, type NetworkFaultResult } from './network.js';
import { Bouncer, findPgbouncer, pgbouncerVersion } from './pgbouncer.js';
import { Cluster } from './postgres.js';
import { fallbackErrorVerdict, faultFigures, hitByKill, latency, READ_ROUTES, readYourWrites, replicaVerdicts, type AppFaultFigures, type InjectedReplicaFault } from './replica-checks.js';
import { FallbackErrorShop, REPLICA_SCHEDULE, REPLICA_SETTINGS, ReplicaObserver, replicaEnv, runReplicaFaults, standbyCaughtUp } from './replica.js';
import { printSummary } from './report.js';
import { APPS, freePort, startShop, type AppName, type ShopProcess } from './shops.js';

const PKG = fileURLToPath(new URL('../', import.meta.url));
const SHOP_PASSWORD = 'shop-secret';

interface Options {
  duration: number;
  restart: boolean;
  /** Network faults through the fault proxy (latency, silent, drip, resets). */
  network: boolean;
  pgbouncer: boolean;
  /** A streaming standby for the shops' read-only routes, with replica faults instead of the restart and the network faults. */
  replica: boolean;
  workers: number;
  /** Only terminate backends at least this old (ms); see README "The CI subset". */
  terminateMinAgeMs: number;
  out: string;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { duration: 60, restart: true, network: true, pgbouncer: false, replica: false, workers: 4, terminateMinAgeMs: 0, out: '' };
  let restartGiven: boolean | undefined;
  let networkGiven: boolean | undefined;
  let minAgeGiven: number | undefined;
  let outGiven: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${arg} needs a value`);
      return v;
    };
    if (arg === '--') continue;
    else if (arg === '--duration') options.duration = Number(value());
    else if (arg === '--workers') options.workers = Number(value());
    else if (arg === '--out') outGiven = resolve(process.cwd(), value());
    else if (arg === '--network') networkGiven = true;
    else if (arg === '--no-network') networkGiven = false;
    else if (arg === '--restart') restartGiven = true;
    else if (arg === '--no-restart') restartGiven = false;
    else if (arg === '--pgbouncer') options.pgbouncer = true;
    else if (arg === '--replica') options.replica = true;
    else if (arg === '--terminate-min-age') minAgeGiven = Number(value());
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: pnpm chaos [--duration 60] [--restart|--no-restart] [--network|--no-network] [--pgbouncer | --replica] [--workers 4] [--terminate-min-age MS] [--out FILE]');
      process.exit(0);
    } else throw new Error(`unknown argument ${arg}`);
  }
  if (!Number.isFinite(options.duration) || options.duration < 5 || options.duration > 3600) throw new Error('--duration must be 5..3600 seconds');
  if (!Number.isInteger(options.workers) || options.workers < 1 || options.workers > 32) throw new Error('--workers must be 1..32');
  if (options.replica) {
    // the replica faults have their own schedule and windows: the primary's restart and network faults would overlap them
    if (options.pgbouncer || restartGiven || networkGiven) throw new Error('--replica runs its own fault schedule: it does not combine with --pgbouncer, --restart or --network');
    if (options.duration < 30) throw new Error('--replica needs --duration 30 or more (three 5 s faults, each with its recovery window)');
  }
  // The PostgreSQL restart needs room around it: on by default from 30 s (the 10 s CI run is the subset without it).
  options.restart = !options.replica && (restartGiven ?? options.duration >= 30);
  // network faults need their recovery windows (10 s each): on by default from 30 s, like the restart
  options.network = !options.replica && (networkGiven ?? options.duration >= 30);
  // Short runs spare backends younger than 1 s: terminating one while its client is still setting it up
  // crashes the app (session-core/Sequelize bug, see README); the full run keeps that fault.
  options.terminateMinAgeMs = minAgeGiven ?? (options.duration >= 30 ? 0 : 1_000);
  if (!Number.isInteger(options.terminateMinAgeMs) || options.terminateMinAgeMs < 0) throw new Error('--terminate-min-age must be an integer >= 0 (ms)');
  // only the standard run (60 s, default faults) replaces the published results; ad-hoc runs go to results/tmp/
  const standard = options.duration === 60 && options.workers === 4 && restartGiven === undefined && networkGiven === undefined && minAgeGiven === undefined;
  const name = options.pgbouncer ? 'pgbouncer' : options.replica ? 'replica' : 'latest';
  options.out = outGiven ?? resolve(PKG, standard ? `results/${name}.json` : `results/tmp/${name}-${options.duration}s.json`);
  return options;
}

const say = (line: string) => console.log(`[chaos] ${line}`);

let cluster: Cluster | undefined;
let standby: Cluster | undefined;
const bouncers: Bouncer[] = [];
let proxy: FaultProxy | undefined;
let replicaProxy: FaultProxy | undefined;
const shops: ShopProcess[] = [];
let stopping = false;
let interrupted = false;

async function cleanup(): Promise<void> {
  await Promise.all(shops.map((shop) => shop.stop(10_000).catch(() => null)));
  await proxy?.close().catch(() => {});
  await replicaProxy?.close().catch(() => {});
  await Promise.all(bouncers.map((b) => b.stop().catch(() => {})));
  await standby?.destroy().catch(() => {});
  await cluster?.destroy().catch(() => {});
}

process.on('exit', () => {
  for (const shop of shops) if (shop.child.exitCode === null && shop.child.signalCode === null) shop.child.kill('SIGKILL');
  for (const b of bouncers) b.killSync();
  standby?.destroySync();
  cluster?.destroySync();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    stopping = true;
    say(`${signal}: stopping the shops and PostgreSQL, removing the data directory`);
    const force = setTimeout(() => process.exit(130), 20_000);
    force.unref();
    void cleanup().finally(() => process.exit(130));
  });
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  let bouncerBinary: string | undefined;
  if (options.pgbouncer) {
    bouncerBinary = findPgbouncer();
    if (!bouncerBinary) {
      say('--pgbouncer: skipped: the `pgbouncer` binary was not found on PATH (install it, e.g. `apt-get install pgbouncer`, to run the shops behind PgBouncer in transaction pooling mode).');
      writeResults(options.out, { skipped: 'pgbouncer binary not found', options, pass: true });
      return 0;
    }
  }
  say(
    `duration ${options.duration} s, workers ${options.workers}/app, PostgreSQL restart ${options.restart ? 'on' : 'off'}, network faults ${options.network ? 'on' : 'off'}, pg_terminate_backend on backends older than ${options.terminateMinAgeMs} ms${options.pgbouncer ? `, behind ${pgbouncerVersion(bouncerBinary!)} (transaction pooling)` : ''}${options.replica ? ', streaming standby with replica faults (stopped, silent, lagging)' : ''}`,
  );

  // -- PostgreSQL (and PgBouncer) --
  cluster = await Cluster.create(await freePort());
  if (options.replica) {
    // synchronous_commit=off: a commit's WAL is flushed (and only then streamed) by the WAL writer, every
    // wal_writer_delay (200 ms by default); 10 ms keeps the standby's lag at what a busy primary shows
    cluster.extraSettings = ['wal_writer_delay=10ms'];
    try {
      standby = await cluster.standby(await freePort());
    } catch (error) {
      return skipReplica(options, error);
    }
  }
  await cluster.start();
  say(`PostgreSQL on 127.0.0.1:${cluster.port} (data ${cluster.dataDir})`);
  if (standby) {
    try {
      await standby.start();
      await standbyCaughtUp(cluster, standby);
    } catch (error) {
      return skipReplica(options, error);
    }
    say(`standby on 127.0.0.1:${standby.port} streaming from the primary (data ${standby.dataDir})`);
  }
  const setup = new pg.Client({ connectionString: cluster.url() });
  await setup.connect();
  await setup.query(`CREATE ROLE shop LOGIN PASSWORD '${SHOP_PASSWORD}'`);
  await setup.query(`CREATE ROLE tenant LOGIN PASSWORD 'tenant-secret'`);
  await setup.query('CREATE DATABASE chaos OWNER shop');
  await setup.end();
  const admin = new pg.Pool({ connectionString: cluster.url('chaos'), max: 3, connectionTimeoutMillis: 3_000 });
  admin.on('error', () => {});

  let appUrl = cluster.url('chaos', 'shop', SHOP_PASSWORD);
  if (options.pgbouncer) {
    const bouncer = new Bouncer({ binary: bouncerBinary!, port: await freePort(), postgresPort: cluster.port, users: { shop: SHOP_PASSWORD, tenant: 'tenant-secret' }, ...cluster.ids });
    bouncers.push(bouncer);
    await bouncer.start();
    appUrl = `postgres://shop:${SHOP_PASSWORD}@127.0.0.1:${bouncer.port}/chaos`;
    say(`PgBouncer (pool_mode=transaction) on 127.0.0.1:${bouncer.port}`);
  }

  // -- the fault proxy: every shop connection goes through it --
  proxy = await startFaultProxy({ port: Number(new URL(appUrl).port) });
  appUrl = proxy.url(appUrl);
  say(`fault proxy on 127.0.0.1:${proxy.port} in front of ${options.pgbouncer ? 'PgBouncer' : 'PostgreSQL'}`);
  let replicaUrl: string | undefined;
  if (standby) {
    // a second fault proxy between the shops and the standby (the silent fault)
    replicaProxy = await startFaultProxy({ port: standby.port });
    replicaUrl = replicaProxy.url(cluster.url('chaos', 'shop', SHOP_PASSWORD));
    say(`fault proxy on 127.0.0.1:${replicaProxy.port} in front of the standby`);
  }

  // -- the three shops --
  // Deadlines: reply = statement_timeout 1000 + margin 500 (behind PgBouncer, where statement_timeout
  // cannot be a startup parameter: an explicit reply deadline of 1500), connect 1500.
  const deadlines = { acquireMs: 500, connectMs: 1_500, replyMs: 1_500 };
  const env: Record<string, string> = {
    DATABASE_URL: appUrl,
    DB_POOL_MAX: '5',
    DB_POOL_ACQUIRE_TIMEOUT_MS: String(deadlines.acquireMs),
    DB_CONNECT_TIMEOUT_MS: String(deadlines.connectMs),
    SHOP_FAULTS: '1',
    ...(options.pgbouncer ? { DB_REPLY_TIMEOUT_MS: String(deadlines.replyMs) } : { DB_STATEMENT_TIMEOUT_MS: '1000', DB_REPLY_TIMEOUT_MARGIN_MS: '500' }),
    ...(replicaUrl ? replicaEnv(replicaUrl) : {}),
  };
  for (const app of APPS) shops.push(await startShop(app, env)); // one at a time: migrations, 2 cores
  if (interrupted) return 130;
  for (const shop of shops) say(`${shop.app} on 127.0.0.1:${shop.port}`);

  // -- items: one dedicated (marker) item per purchase, named after it, plus two shared hot items per app --
  const initialStock = new Map<number, number>();
  const loads = new Map<AppName, AppLoad>();
  const markerCount = Math.ceil(options.duration * 12 * options.workers);
  for (const shop of shops) {
    const marker = (
      await admin.query<{ id: number; stock: number }>(
        "INSERT INTO items (name, price_cents, stock) SELECT 'chaos ' || $1::text || ' purchase #' || g, 100 + g % 50, 3 FROM generate_series(1, $2::int) g RETURNING id, stock",
        [shop.app, markerCount],
      )
    ).rows;
    const hot = (
      await admin.query<{ id: number; stock: number }>(
        "INSERT INTO items (name, price_cents, stock) SELECT 'chaos ' || $1::text || ' hot #' || g, 250, 400 FROM generate_series(1, 2) g RETURNING id, stock",
        [shop.app],
      )
    ).rows;
    for (const row of [...marker, ...hot]) initialStock.set(row.id, row.stock);
    const markerIds = marker.map((r) => r.id).reverse();
    loads.set(
      shop.app,
      new AppLoad(
        shop.app,
        shop,
        markerIds,
        hot.map((r) => r.id),
        [...markerIds, ...hot.map((r) => r.id)],
      ),
    );
  }
  const all = [...loads.values()];
  // a fourth shop with DB_REPLICA_FALLBACK=error, probed but not loaded (not among the apps checked above)
  let fallbackShop: FallbackErrorShop | undefined;
  if (replicaUrl) {
    const shop = await startShop('express-shop', { ...env, DB_REPLICA_FALLBACK: 'error' });
    shops.push(shop);
    fallbackShop = new FallbackErrorShop(shop, loads.get('express-shop')!.hotItems[0]!);
    say(`express-shop with DB_REPLICA_FALLBACK=error on 127.0.0.1:${shop.port} (probed, not loaded)`);
  }
  // the items exist on the standby before the first read
  if (standby) say(`standby caught up with the items after ${await standbyCaughtUp(cluster, standby)} ms`);

  // -- load and faults --
  const loadStarted = Date.now();
  const deadline = loadStarted + options.duration * 1000;
  const done = () => stopping || Date.now() >= deadline;
  let dbDown = false;
  let burstsPaused = false;
  const terminations = new Map<string, number>();
  const kills: Array<{ at: number; app: string | undefined }> = [];
  const restart: { stoppedAt?: number; upAt?: number; stopMs?: number; recovery: Record<string, number | null> } = { recovery: {} };

  const workers = all.flatMap((load) => Array.from({ length: options.workers }, () => worker(load, done, { faults: true, aborts: true, readAfterWrite: options.replica })));

  const observer = new ReplicaObserver(all, REPLICA_SETTINGS.pollMs);
  let replicaFaults: InjectedReplicaFault[] = [];
  const replicaRun = (async () => {
    if (!standby) return;
    observer.start();
    fallbackShop?.start(done);
    replicaFaults = await runReplicaFaults({
      primary: cluster!,
      standby,
      proxy: replicaProxy!,
      loads: all,
      observer,
      schedule: REPLICA_SCHEDULE,
      durationMs: options.duration * 1000,
      loadStarted,
      done,
      say,
    });
  })();

  const terminator = (async () => {
    for (let i = 0; i < 100_000 && !done(); i++) {
      await sleep(400 + Math.random() * 200);
      if (dbDown || done()) continue;
      try {
        const killed = await terminateOne(admin, { applicationNames: options.pgbouncer ? undefined : [...APPS], minAgeMs: options.terminateMinAgeMs });
        if (!killed) continue;
        kills.push({ at: Date.now(), app: options.pgbouncer ? undefined : killed.app });
        const key = `${killed.state}`;
        terminations.set(key, (terminations.get(key) ?? 0) + 1);
        const load = loads.get(killed.app as AppName);
        if (load) load.count(load.faults, `pg_terminate_backend:${killed.state}`);
        else terminations.set(`via pgbouncer:${killed.state}`, (terminations.get(`via pgbouncer:${killed.state}`) ?? 0) + 1);
      } catch {
        // the database is restarting
      }
    }
  })();

  const bursts = (async () => {
    for (let i = 0; i < 10_000 && !done(); i++) {
      await sleep(2500 + Math.random() * 1000);
      if (done() || burstsPaused) continue;
      const load = all[i % all.length]!;
      await burst(load, 14, 700);
    }
  })();

  // pending while the restart runs and its /health probing lasts (network faults wait for it)
  let restartSettled: Promise<void> = Promise.resolve();
  let settleRestart = () => {};
  const restarter = (async () => {
    if (!options.restart) return;
    await sleep(options.duration * 1000 * 0.4);
    if (done()) return;
    restartSettled = new Promise((resolve) => {
      settleRestart = resolve;
    });
    burstsPaused = true;
    dbDown = true;
    say('restarting PostgreSQL (fast shutdown, 2 s down, same data directory)');
    const t0 = Date.now();
    await cluster!.stop();
    restart.stoppedAt = Date.now() - loadStarted;
    restart.stopMs = Date.now() - t0;
    await sleep(2000);
    await cluster!.start();
    const upAt = Date.now();
    restart.upAt = upAt - loadStarted;
    dbDown = false;
    say(`PostgreSQL is back (down for ${Date.now() - t0} ms); probing /health of every app`);
    await Promise.all(
      all.map(async (load) => {
        const ms = await until(async () => (await send({ port: load.shop.port, path: '/health', timeoutMs: 2_000 })).status === 200, 30_000, 100);
        restart.recovery[load.app] = ms ?? null;
        load.count(load.faults, 'postgres-restart');
      }),
    );
    burstsPaused = false;
  })().finally(() => settleRestart());

  let networkResults: NetworkFaultResult[] = [];
  const network = (async () => {
    if (!options.network) return;
    networkResults = await runNetworkFaults({
      proxy: proxy!,
      loads: all,
      schedule: NETWORK_SCHEDULE,
      durationMs: options.duration * 1000,
      loadStarted,
      otherFaultsAt: options.restart ? [options.duration * 1000 * 0.4] : [],
      otherFaultsSettled: () => restartSettled,
      done,
      kills,
      say,
    });
  })();

  // progress line every 10 s
  const progress = (async () => {
    for (let i = 0; i < 10_000 && !done(); i++) {
      await sleep(Math.min(10_000, Math.max(50, deadline - Date.now())));
      if (done()) break;
      const total = all.reduce((n, l) => n + [...l.statuses.values()].reduce((a, b) => a + b, 0), 0);
      say(`${Math.round((Date.now() - loadStarted) / 1000)} s: ${total} requests`);
    }
  })();

  await Promise.all([...workers, terminator, bursts, restarter, network, progress, replicaRun]);
  await observer.stop();
  await fallbackShop?.stop();
  proxy.pass();
  replicaProxy?.pass();
  if (interrupted) return 130;
  const loadMs = Date.now() - loadStarted;
  say(`load stopped after ${(loadMs / 1000).toFixed(1)} s; checking invariants`);

  // -- invariants --
  const verdicts: Verdict[] = [];
  for (const load of all) {
    const crashed = load.shop.crashed;
    verdicts.push({
      app: load.app,
      name: 'process stayed up',
      pass: !crashed,
      detail: crashed ? `exited (${crashed.signal ?? crashed.code}) during the run; last output: ${crashed.tail.slice(-1500)}` : 'running',
    });
    if (crashed) console.error(`[chaos] ${load.app} exited during the run (${crashed.signal ?? crashed.code}); its last output:\n${crashed.tail}`);
  }
  verdicts.push(...longestRequestVerdicts(all, deadlines));
  if (options.network) {
    countStaleFailures(all, networkResults, loadStarted, kills);
    verdicts.push(...networkVerdicts(all, networkResults));
  }
  for (const load of all) {
    const recovery = restart.recovery[load.app];
    if (options.restart) {
      verdicts.push({
        app: load.app,
        name: '/health 200 within 5 s of PostgreSQL restart',
        pass: recovery !== undefined && recovery !== null && recovery <= 5_000,
        detail: recovery === undefined ? 'restart did not happen' : recovery === null ? 'no 200 within 30 s' : `first 200 after ${recovery} ms`,
      });
    }
    const healthMs = await until(async () => (await send({ port: load.shop.port, path: '/health', timeoutMs: 2_000 })).status === 200, 5_000, 100);
    verdicts.push({ app: load.app, name: '/health 200 within 5 s after load', pass: healthMs !== undefined, detail: healthMs === undefined ? 'no 200 within 5 s' : `after ${healthMs} ms` });
  }

  // pool released and no idle-in-transaction backend once load stops (a deadline, not a sleep)
  type Snapshot = { inUse: number; open: number; waiting: number; idleInTx: number; standbyIdleInTx: number };
  const standbyAdmin = standby ? new pg.Pool({ connectionString: standby.url('chaos'), max: 1, connectionTimeoutMillis: 3_000 }) : undefined;
  standbyAdmin?.on('error', () => {});
  const snapshot = async (load: AppLoad): Promise<Snapshot> => {
    const stats = await send({ port: load.shop.port, path: '/stats', timeoutMs: 2_000 });
    const body = stats.body as { pool?: { inUse?: number; waiting?: number }; sessions?: { open?: number } } | undefined;
    const idle = await admin.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'chaos' AND usename = 'shop' AND state LIKE 'idle in transaction%' AND ($1::text IS NULL OR application_name = $1)`,
      [options.pgbouncer ? null : load.app],
    );
    const idleStandby = standbyAdmin
      ? ((
          await standbyAdmin.query<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = 'chaos' AND usename = 'shop' AND state LIKE 'idle in transaction%' AND application_name = $1`,
            [load.app],
          )
        ).rows[0]?.n ?? -1)
      : 0;
    return { inUse: body?.pool?.inUse ?? -1, open: body?.sessions?.open ?? -1, waiting: body?.pool?.waiting ?? -1, idleInTx: idle.rows[0]?.n ?? -1, standbyIdleInTx: idleStandby };
  };
  const snapshots = new Map<AppName, Snapshot>();
  const settleMs = await until(
    async () => {
      let clean = true;
      for (const load of all) {
        const s = await snapshot(load);
        snapshots.set(load.app, s);
        if (s.inUse !== 0 || s.open !== 0 || s.idleInTx !== 0 || s.standbyIdleInTx !== 0) clean = false;
      }
      return clean;
    },
    15_000,
    200,
  );
  for (const load of all) {
    const s = snapshots.get(load.app);
    verdicts.push({
      app: load.app,
      name: 'pool released: inUse 0, no open session',
      pass: s?.inUse === 0 && s.open === 0,
      detail: `inUse ${s?.inUse}, open sessions ${s?.open}, waiting ${s?.waiting}${settleMs !== undefined ? ` (settled ${settleMs} ms after load)` : ' (not settled within 15 s)'}`,
    });
    verdicts.push({
      app: load.app,
      name: "no 'idle in transaction' backend",
      pass: s?.idleInTx === 0,
      detail: `${s?.idleInTx} idle-in-transaction backends${options.pgbouncer ? ' (all apps, behind PgBouncer)' : ''}`,
    });
    if (standbyAdmin) {
      verdicts.push({
        app: load.app,
        name: "no 'idle in transaction' backend on the standby",
        pass: s?.standbyIdleInTx === 0,
        detail: `${s?.standbyIdleInTx} idle-in-transaction backends of the app on the standby`,
      });
    }
  }
  await standbyAdmin?.end().catch(() => {});

  // -- replica: figures per fault and app, and their verdicts --
  let replicaReport: Record<string, unknown> | undefined;
  if (standby) {
    const firstFault = replicaFaults[0]?.startedAt ?? loadStarted + loadMs;
    const perApp: Record<string, unknown> = {};
    for (const load of all) {
      const samples = observer.samples.get(load.app) ?? [];
      const figures: AppFaultFigures[] = replicaFaults.map((fault) => faultFigures(fault, samples, load.log, REPLICA_SETTINGS.pollMs, (e) => hitByKill(load.app, e, kills)));
      verdicts.push(...replicaVerdicts({ app: load.app, faults: replicaFaults, figures, log: load.log, reads: load.readsAfterWrite, kills, settings: REPLICA_SETTINGS }));
      const servedAt = (at: number) => [...samples].reverse().find((s) => s.at <= at)?.served ?? null;
      const baselineReads = load.log.filter((e) => READ_ROUTES.has(e.route) && e.startedAt + e.ms < firstFault && e.status === 200);
      perApp[load.app] = {
        baseline: { servedByReplica: (servedAt(firstFault) ?? 0) - (samples[0]?.served ?? 0), readLatency: latency(baselineReads.map((e) => e.ms)) },
        faults: replicaFaults.map((fault, i) => ({ kind: fault.kind, ...figures[i] })),
        servedByReplicaTotal: samples[samples.length - 1]?.served ?? null,
        readsTotal: load.log.filter((e) => READ_ROUTES.has(e.route)).length,
        readYourWrites: readYourWrites(load.readsAfterWrite),
        samples: samples.length,
      };
    }
    if (fallbackShop) verdicts.push(fallbackErrorVerdict('express-shop (fallback error)', fallbackShop.probes, replicaFaults, fallbackShop.shop.crashed !== undefined));
    replicaReport = {
      settings: REPLICA_SETTINGS,
      fallbackError: fallbackShop && {
        probes: fallbackShop.probes.length,
        byState: Object.fromEntries(
          ['up', 'down', 'lagging'].map((state) => [
            state,
            fallbackShop!.probes
              .filter((p) => p.before === state && p.after === state)
              .reduce<Record<string, number>>((acc, p) => {
                const key = p.status === undefined ? 'no answer' : `${p.status}${p.error ? ` ${p.error}` : ''}${p.retryAfter ? ` retry-after ${p.retryAfter}` : ''}`;
                acc[key] = (acc[key] ?? 0) + 1;
                return acc;
              }, {}),
          ]),
        ),
      },
      faults: replicaFaults.map((f) => ({ kind: f.kind, startedAt: f.startedAt - loadStarted, endedAt: f.endedAt - loadStarted, nextAt: f.nextAt - loadStarted })),
      apps: perApp,
    };
  }

  const outcomes = new Map<AppName, PurchaseOutcomes>();
  for (const load of all) {
    const r = await send({ port: load.shop.port, path: '/receipts', timeoutMs: 5_000 });
    const receipts = r.status === 200 ? ((r.body as { orderIds?: number[] }).orderIds ?? []) : undefined;
    const inDoubt = r.status === 200 ? ((r.body as { inDoubt?: number[] }).inDoubt ?? []) : [];
    const checked = await checkApp(admin, load, initialStock, receipts, inDoubt);
    verdicts.push(...checked.verdicts);
    outcomes.set(load.app, checked.outcomes);
  }
  verdicts.push(await checkOrphanPayments(admin));

  let bouncerReport: BouncerReport | undefined;
  if (options.pgbouncer) {
    say('PgBouncer: settings / RLS isolation / statement timeouts');
    bouncerReport = await runBouncerChecks({ cluster, admin, bouncer: bouncers[0]!, binary: bouncerBinary!, track: (b) => bouncers.push(b) });
    verdicts.push(...bouncerReport.verdicts);
  }
  await admin.end().catch(() => {});

  const pass = verdicts.every((v) => v.pass);
  const result = {
    pass,
    options: { ...options, out: undefined },
    mode: options.pgbouncer ? 'pgbouncer-transaction' : options.replica ? 'streaming-replica' : 'direct',
    startedAt: new Date(started).toISOString(),
    loadMs,
    totalMs: Date.now() - started,
    postgresRestart: options.restart ? restart : null,
    deadlines,
    network: options.network ? networkResults : null,
    longestRequestMs: Object.fromEntries(all.map((load) => [load.app, Math.round(Math.max(0, ...load.log.filter((e) => !(e.status === undefined && e.expected)).map((e) => e.ms)))])),
    terminationsByBackendState: Object.fromEntries(terminations),
    apps: Object.fromEntries(
      all.map((load) => [
        load.app,
        {
          requests: Object.fromEntries([...load.statuses].sort()),
          errors: Object.fromEntries([...load.errors].sort()),
          faults: Object.fromEntries([...load.faults].sort()),
          purchases: {
            total: load.purchases.length,
            marker: load.purchases.filter((p) => p.kind === 'marker').length,
            hot: load.purchases.filter((p) => p.kind === 'hot').length,
            ...outcomes.get(load.app),
          },
          loggedFailures: Object.fromEntries([...load.shop.failures].sort((a, b) => b[1] - a[1]).slice(0, 10)),
        },
      ]),
    ),
    invariants: verdicts,
    pgbouncer: bouncerReport?.facts,
    replica: replicaReport,
  };
  writeResults(options.out, result);
  printSummary(result);
  say(`results written to ${options.out}`);
  if (options.network) {
    const longest = result.longestRequestMs;
    say(`network faults: longest request ${JSON.stringify(longest)} ms (deadlines: acquire ${deadlines.acquireMs}, connect ${deadlines.connectMs}, reply ${deadlines.replyMs} ms)`);
    for (const r of networkResults)
      say(`  ${r.kind}: /health 200 after ${JSON.stringify(r.healthMs)} ms; stale-connection failures in ${(r.windowMs / 1000).toFixed(1)} s: ${JSON.stringify(r.staleFailures)}`);
  }
  if (replicaReport) {
    for (const [app, figures] of Object.entries(
      replicaReport.apps as Record<string, { baseline: { servedByReplica: number; readLatency: { p50: number | null } }; faults: Array<AppFaultFigures & { kind: string }> }>,
    )) {
      say(
        `replica ${app}: baseline ${figures.baseline.servedByReplica} reads on the replica (p50 ${figures.baseline.readLatency.p50} ms); ${figures.faults
          .map(
            (f) =>
              `${f.kind}: seen after ${f.markedMs} ms, fallback p50 ${f.fallbackLatency.p50} / max ${f.fallbackLatency.max} ms, up ${f.backMs} ms after, then ${f.servedAfterBack} reads on the replica`,
          )
          .join('; ')}`,
      );
    }
  }
  say(pass ? 'all invariants PASS' : `FAILED: ${verdicts.filter((v) => !v.pass).length} invariant(s)`);
  return pass ? 0 : 1;
}

/** `--replica` when no standby can be made here: say why, write it, exit 0 (like `--pgbouncer` without the binary). */
function skipReplica(options: Options, error: unknown): number {
  const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
  say(`--replica: skipped: a streaming standby could not be made here (${reason}).`);
  writeResults(options.out, { skipped: `no streaming standby: ${reason}`, options: { ...options, out: undefined }, pass: true });
  return 0;
}

function writeResults(out: string, data: unknown): void {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(data, null, 2)}\n`);
}

let code = 1;
try {
  code = await main();
} catch (error) {
  console.error('[chaos] failed:', error);
  code = 2;
} finally {
  if (!interrupted) {
    stopping = true;
    await cleanup();
  }
}
if (!interrupted) process.exit(code);

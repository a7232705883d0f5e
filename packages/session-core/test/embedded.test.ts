import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/testing/index.js';
import { blockedDirectory } from '../src/testing/embedded.js';

describe('startEmbeddedPostgres', () => {
  it('serves a real PostgreSQL, leaves SIGINT/SIGTERM to the app, and stops cleanly even after the server died', async () => {
    const before = { int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') };
    const db = await startEmbeddedPostgres();
    try {
      expect({ int: process.listenerCount('SIGINT'), term: process.listenerCount('SIGTERM') }).toEqual(before);
      const client = new pg.Client({ connectionString: db.url });
      await client.connect();
      const { rows } = await client.query('SELECT current_setting($1) AS v', ['server_version_num']);
      await client.end();
      expect(Number(rows[0].v)).toBeGreaterThanOrEqual(150000);
      // a terminal Ctrl-C reaches the server too: it shuts down before stop() is called
      const pid = Number(readFileSync(join(db.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGINT');
    } finally {
      const started = Date.now();
      await db.stop({ timeoutMs: 5000 });
      expect(Date.now() - started).toBeLessThan(8000);
    }
    expect(existsSync(db.dataDir)).toBe(false);
  });
});

describe('embedded PostgreSQL as root under a private (0700) directory', () => {
  it('finds the directory the unprivileged server user cannot enter', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sl-private-')); // mkdtemp makes it 0700
    try {
      expect(blockedDirectory(join(dir, 'data', 'deeper'))).toEqual({ dir, mode: '0700' });
      expect(blockedDirectory(tmpdir())).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.runIf(process.getuid?.() === 0)('fails before spawning, naming the path and the fix', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sl-private-'));
    try {
      const error = await startEmbeddedPostgres({ dataDir: join(dir, 'data') }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toContain(`cannot enter ${dir} (mode 0700)`);
      expect((error as Error).message).toContain(`chmod o+x ${dir}`);
      expect(existsSync(join(dir, 'data'))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startEmbeddedDatabase, stopEmbeddedDatabase } from '../src/index.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the embedded database of a shop started without DATABASE_URL', () => {
  it('leaves SIGINT/SIGTERM to the app, and is cleaned up even when Ctrl-C already stopped postgres', async () => {
    const listeners = { SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM') };
    const db = await startEmbeddedDatabase();
    expect({ SIGINT: process.listenerCount('SIGINT'), SIGTERM: process.listenerCount('SIGTERM') }).toEqual(listeners);

    // What a terminal's Ctrl-C does to the process group: postgres gets SIGINT too and exits on its own.
    const pid = Number(readFileSync(join(db.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGINT');
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect(alive(pid)).toBe(false);

    const started = Date.now();
    await stopEmbeddedDatabase(db, 5_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(existsSync(db.dataDir)).toBe(false);
  });
});

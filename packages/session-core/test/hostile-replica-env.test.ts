import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, createEngine, engineFromEnv, type Engine } from '../src/index.js';

/**
 * Hostile second opinion on `engineFromEnv` with replica variables (docs/production.md: "Bad
 * values fail at startup with a ConfigError that names the field (and never shows the
 * password)"). No server is needed: configuration is validated before any connection.
 */
const PRIMARY = 'postgres://app:PrimaryPw1@127.0.0.1:5432/app';
const SECRET = 'Hunter2ReplicaPw';

function attempt(env: Record<string, string>): { engine?: Engine; error?: unknown } {
  try {
    return { engine: engineFromEnv({ DATABASE_URL: PRIMARY, ...env }) };
  } catch (error) {
    return { error };
  }
}

function shown(error: unknown): string {
  const e = error as Error;
  return `${e?.message}\n${e?.stack}\n${JSON.stringify(e)}\n${String(e)}`;
}

describe('hostile: engineFromEnv replica variables', () => {
  it('reads DATABASE_REPLICA_URLS (comma- or space-separated) and the DB_REPLICA_* options', async () => {
    const { engine, error } = attempt({
      DATABASE_REPLICA_URLS: ` postgres://ro:${SECRET}@10.0.0.1:5432/app,postgres://ro:${SECRET}@10.0.0.2/app  postgres://ro:${SECRET}@10.0.0.3:6432/app `,
      DB_REPLICA_MAX_LAG_MS: '5000',
      DB_REPLICA_FALLBACK: 'error',
      DB_REPLICA_CHECK_INTERVAL_MS: '0',
      DB_REPLICA_CHECK_TIMEOUT_MS: '750',
    });
    expect(error).toBeUndefined();
    try {
      const replicas = engine?.stats().pools?.replicas ?? [];
      expect(replicas.map((r) => r.url)).toEqual(['postgres://ro:***@10.0.0.1:5432/app', 'postgres://ro:***@10.0.0.2/app', 'postgres://ro:***@10.0.0.3:6432/app']);
      expect(replicas.every((r) => r.state === 'unknown')).toBe(true);
      expect(JSON.stringify(engine?.stats())).not.toContain(SECRET);
    } finally {
      await engine?.dispose();
    }
  });

  it('an empty or blank DATABASE_REPLICA_URLS means no replicas', async () => {
    for (const value of ['', '   ', ' , ,, ']) {
      const { engine, error } = attempt({ DATABASE_REPLICA_URLS: value });
      expect(error, JSON.stringify(value)).toBeUndefined();
      expect(engine?.stats().pools).toBeUndefined();
      await engine?.dispose();
    }
  });

  const badUrls: Array<[string, string]> = [
    [`mysql://ro:${SECRET}@10.0.0.1/app`, 'DATABASE_REPLICA_URLS[0]'],
    [`postgres://ro:${SECRET}@/app`, 'DATABASE_REPLICA_URLS[0]'],
    [`postgres://ro:${SECRET}@10.0.0.1:99999/app`, 'DATABASE_REPLICA_URLS[0]'],
    [`postgres://ro:${SECRET}@10.0.0.1:5432`, 'DATABASE_REPLICA_URLS[0]'],
    [`ro:${SECRET}@10.0.0.1:5432/app`, 'DATABASE_REPLICA_URLS[0]'],
    [`postgres://ro:${SECRET}%zz@10.0.0.1/app`, 'DATABASE_REPLICA_URLS[0]'],
    [`postgres://ok:pw@10.0.0.1/app,http://ro:${SECRET}@10.0.0.2/app`, 'DATABASE_REPLICA_URLS[1]'],
    // a password with an unescaped comma is split in two: neither half may be shown
    [`postgres://ro:${SECRET.slice(0, 6)},${SECRET.slice(6)}@10.0.0.1/app`, 'DATABASE_REPLICA_URLS[0]'],
  ];

  it.each(badUrls)('a bad replica URL %s is a ConfigError naming %s, without the password', (value, field) => {
    const { error } = attempt({ DATABASE_REPLICA_URLS: value });
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).field).toBe(field);
    expect((error as ConfigError).message).toContain(field);
    for (const part of [SECRET, SECRET.slice(0, 6), SECRET.slice(6)]) expect(shown(error)).not.toContain(part);
  });

  // BREAK (fixed in src/errors.ts): a ConfigError quoted the bad value as given, so a replica URL
  // pasted into the wrong variable (DB_REPLICA_FALLBACK, DB_REPLICA_MAX_LAG_MS, …) showed its password.
  it('a bad DB_REPLICA_* value is a ConfigError naming the variable and never shows a password, whatever was pasted there (generated)', () => {
    const variables = ['DB_REPLICA_MAX_LAG_MS', 'DB_REPLICA_FALLBACK', 'DB_REPLICA_CHECK_INTERVAL_MS', 'DB_REPLICA_CHECK_TIMEOUT_MS'];
    const value = fc.oneof(
      fc.constantFrom('-1', 'abc', '1.5', '1e3', 'primray', 'ERROR', ' '),
      fc.string({ minLength: 1, maxLength: 12 }).map((pw) => `postgres://ro:${SECRET}${encodeURIComponent(pw)}@10.0.0.9:5432/app`),
    );
    fc.assert(
      fc.property(fc.constantFrom(...variables), value, (variable, raw) => {
        const { engine, error } = attempt({ [variable]: raw });
        void engine?.dispose();
        return error instanceof ConfigError && error.field === variable && !shown(error).includes(SECRET);
      }),
      { numRuns: 150, examples: variables.map((v) => [v, `postgres://ro:${SECRET}@10.0.0.9:5432/app`]) },
    );
  });

  it('DB_REPLICA_CHECK_TIMEOUT_MS=0 is refused (a check needs a deadline); DB_REPLICA_CHECK_INTERVAL_MS=0 turns background checks off', async () => {
    const zero = attempt({ DATABASE_REPLICA_URLS: `postgres://ro:${SECRET}@10.0.0.1/app`, DB_REPLICA_CHECK_TIMEOUT_MS: '0' });
    expect(zero.error).toBeInstanceOf(ConfigError);
    expect((zero.error as ConfigError).field).toBe('DB_REPLICA_CHECK_TIMEOUT_MS');
    const off = attempt({ DATABASE_REPLICA_URLS: `postgres://ro:${SECRET}@10.0.0.1/app`, DB_REPLICA_CHECK_INTERVAL_MS: '0' });
    expect(off.error).toBeUndefined();
    await off.engine?.dispose();
  });

  it('replicas given to createEngine are validated the same way, with the index in the field', () => {
    for (const [replicas, field] of [
      [[`postgres://ro:${SECRET}@10.0.0.1/app`, `mysql://ro:${SECRET}@h/app`], 'replicas[1]'],
      [[42], 'replicas[0]'],
      [`postgres://ro:${SECRET}@10.0.0.1/app`, 'replicas'],
    ] as Array<[unknown, string]>) {
      let error: unknown;
      try {
        createEngine(PRIMARY, { replicas: replicas as string[] });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field).toBe(field);
      expect(shown(error)).not.toContain(SECRET);
    }
    for (const [replicaOptions, field] of [
      [{ fallback: 'replica' }, 'replicaOptions.fallback'],
      [{ maxLagMs: -1 }, 'replicaOptions.maxLagMs'],
      [{ checkTimeoutMs: 0 }, 'replicaOptions.checkTimeoutMs'],
      [{ checkIntervalMs: 1.5 }, 'replicaOptions.checkIntervalMs'],
      [{ onStateChange: 'log' }, 'replicaOptions.onStateChange'],
      [{ fallback: `postgres://ro:${SECRET}@h/app` }, 'replicaOptions.fallback'],
    ] as Array<[unknown, string]>) {
      let error: unknown;
      try {
        createEngine(PRIMARY, { replicas: [`postgres://ro:${SECRET}@10.0.0.1/app`], replicaOptions: replicaOptions as never });
      } catch (e) {
        error = e;
      }
      expect(error, field).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field).toBe(field);
      expect(shown(error)).not.toContain(SECRET);
    }
  });
});

import { describe, expect, it } from 'vitest';
import { ConfigError, EngineDisposedError, NoActiveSessionError, SessionClosedError, SessionLocalError, createEngine, engineFromEnv, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();
const SECRET = 'hunter2-very-secret';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect(e).toBeInstanceOf(SessionLocalError);
    expect((e as ConfigError).code).toBe('CONFIG_INVALID');
    const text = [(e as Error).message, (e as Error).stack, JSON.stringify(e)].join('\n');
    expect(text).not.toContain(SECRET);
    return e as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('engine configuration is validated eagerly', () => {
  it('a malformed URL names the field and hides the password', () => {
    const e = configError(() => createEngine(`postgres://app:${SECRET}@@:bad port/db`));
    expect(e.field).toBe('url');
  });

  it.each([
    [`postgres://app:${SECRET}@127.0.0.1:5432/db%`, /invalid percent-escape/],
    [`postgres://app:${SECRET}%ZZ@127.0.0.1:5432/db`, /invalid percent-escape/],
    [`app:${SECRET}@127.0.0.1/db`, /has no scheme/],
    [`${SECRET}@127.0.0.1/db`, /not a valid URL|has no scheme/],
    [`postgres://app:${SECRET}@127.0.0.1:5432/`, /no database name/],
  ])('%s is a ConfigError naming url, without the password', (url, message) => {
    const e = configError(() => createEngine(url));
    expect(e.field).toBe('url');
    expect(e.message).toMatch(message);
  });

  it('an unsupported dialect is a ConfigError', () => {
    const e = configError(() => createEngine(`mysql://root:${SECRET}@127.0.0.1:3306/test`));
    expect(e.field).toBe('url');
    expect(e.message).toMatch(/unsupported dialect "mysql"/);
  });

  it.each([
    [{ pool: { max: 0 } }, 'pool.max'],
    [{ pool: { max: -3 } }, 'pool.max'],
    [{ pool: { max: 2, min: 5 } }, 'pool.min'],
    [{ pool: { acquireTimeoutMs: 0 } }, 'pool.acquireTimeoutMs'],
    [{ statementTimeoutMs: -1 }, 'statementTimeoutMs'],
    [{ echo: 'yes' }, 'echo'],
    [{ replicas: ['http://x/y'] }, 'replicas[0]'],
  ])('%j is rejected naming %s', (options, field) => {
    expect(configError(() => createEngine(`postgres://app:${SECRET}@127.0.0.1/db`, options as never)).field).toBe(field);
  });

  it('an unknown isolation level is a ConfigError, in the factory and per session', () => {
    expect(configError(() => sessionmaker(h.engine, { isolationLevel: 'SNAPSHOT' })).field).toBe('isolationLevel');
    expect(configError(() => h.SessionLocal({ isolationLevel: 'chaos' })).field).toBe('isolationLevel');
    expect(sessionmaker(h.engine, { isolationLevel: 'repeatable read' }).options.isolationLevel).toBe('REPEATABLE READ');
  });

  it('engineFromEnv reads the documented variables and validates them', async () => {
    const engine = engineFromEnv({
      DATABASE_URL: h.db.url,
      DB_POOL_MAX: '3',
      DB_POOL_MIN: '0',
      DB_POOL_ACQUIRE_TIMEOUT_MS: '1234',
      DB_POOL_IDLE_TIMEOUT_MS: '500',
      DB_STATEMENT_TIMEOUT_MS: '5000',
      DB_ECHO: 'false',
    });
    h.engines.push(engine);
    expect(engine.options.pool).toEqual({ max: 3, min: 0, acquireTimeoutMs: 1234, idleTimeoutMs: 500, validateIdleMs: 5000 });
    expect(engine.options.statementTimeoutMs).toBe(5000);
    const [rows] = (await sessionmaker(engine).begin(() => engine.sequelize.query("SELECT current_setting('statement_timeout') AS v"))) as [Array<{ v: string }>, unknown];
    expect(rows[0]!.v).toBe('5s');
    expect(configError(() => engineFromEnv({})).field).toBe('DATABASE_URL');
    expect(configError(() => engineFromEnv({ DATABASE_URL: h.db.url, DB_POOL_MAX: 'ten' })).field).toBe('DB_POOL_MAX');
    expect(configError(() => engineFromEnv({ DATABASE_URL: h.db.url, DB_POOL_MAX: '0' })).field).toBe('DB_POOL_MAX');
    expect(configError(() => engineFromEnv({ DATABASE_URL: h.db.url, DB_ECHO: 'loud' })).field).toBe('DB_ECHO');
  });
});

describe('passwords never leak', () => {
  it('echo logs statements without the password, and engine.url is redacted', async () => {
    const role = `sl_echo_${Date.now().toString(36)}`;
    await h.observer.query(`CREATE ROLE ${role} LOGIN PASSWORD '${SECRET}'`);
    try {
      const url = new URL(h.db.url);
      url.username = role;
      url.password = SECRET;
      const lines: string[] = [];
      const engine = createEngine(url.toString(), { echo: (sql) => lines.push(sql), pool: { acquireTimeoutMs: 2000 } });
      expect(engine.url).not.toContain(SECRET);
      expect(engine.url).toContain('***');
      await sessionmaker(engine).begin(() => engine.sequelize.query(`SELECT '${SECRET}' AS s, current_user AS u`));
      await engine.dispose();
      expect(lines.join('\n')).toMatch(/BEGIN/);
      expect(lines.join('\n')).toMatch(/COMMIT/);
      expect(lines.join('\n')).not.toContain(SECRET);
    } finally {
      await h.observer.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('a wrong password (on a password-auth server) or any connection error never shows the password', async () => {
    const url = new URL(h.db.url);
    url.username = 'sl_nobody';
    url.password = SECRET;
    const engine = createEngine(url.toString(), { pool: { acquireTimeoutMs: 2000 } });
    const outcome = await sessionmaker(engine)
      .begin(() => engine.sequelize.query('SELECT 1'))
      .catch((e: unknown) => e);
    await engine.dispose();
    expect(outcome).toBeInstanceOf(Error); // the role does not exist, whatever the auth method
    const text = [String((outcome as Error).message), String((outcome as Error).stack), JSON.stringify(outcome)].join('\n');
    expect(text).not.toContain(SECRET);
  });

  it('a refused connection error carries no password in message, stack, cause chain or JSON', async () => {
    const engine = createEngine(`postgres://app:${SECRET}@127.0.0.1:1/nowhere`, { pool: { acquireTimeoutMs: 2000 } });
    const error = await sessionmaker(engine)
      .begin(() => engine.sequelize.query('SELECT 1'))
      .catch((e: unknown) => e);
    await engine.dispose();
    expect(error).toBeInstanceOf(Error);
    const parts: string[] = [];
    let current: unknown = error;
    for (let i = 0; i < 5 && current; i++) {
      const c = current as { message?: string; stack?: string; cause?: unknown; parent?: unknown; original?: unknown };
      parts.push(String(c.message), String(c.stack), JSON.stringify(current));
      current = c.cause ?? c.parent ?? c.original;
    }
    expect(parts.join('\n')).not.toContain(SECRET);
  });
});

describe('stats, ping, strict, dispose', () => {
  it('stats() reports the pool and session counters', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 3 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    expect(engine.stats()).toEqual({ pool: { size: 0, idle: 0, inUse: 0, waiting: 0 }, sessions: { open: 0, opened: 0, committed: 0, rolledBack: 0 } });
    const a = SessionLocal();
    await a.begin();
    expect(engine.stats().pool.inUse).toBe(1);
    expect(engine.stats().sessions.open).toBe(1);
    await a.commit();
    await SessionLocal.begin(() => Promise.reject(new Error('x')).then(() => engine.sequelize.query('SELECT 1'))).catch(() => undefined);
    const b = SessionLocal();
    await b.begin();
    await b.close();
    await a.close();
    expect(engine.stats()).toMatchObject({ pool: { size: 1, idle: 1, inUse: 0, waiting: 0 }, sessions: { open: 0, opened: 2, committed: 1, rolledBack: 1 } });
  });

  it('ping() makes a round trip', async () => {
    expect(await h.engine.ping()).toBeGreaterThan(0);
  });

  it('strict engines refuse queries outside a session, except inside engine.autocommit()', async () => {
    const engine = createEngine(h.db.url, { strict: true });
    h.engines.push(engine);
    await expect(engine.sequelize.query('SELECT 1')).rejects.toBeInstanceOf(NoActiveSessionError);
    await expect(engine.autocommit(() => engine.sequelize.query('SELECT 1'))).resolves.toBeDefined();
    await expect(sessionmaker(engine).begin(() => engine.sequelize.query('SELECT 1'))).resolves.toBeDefined();
  });

  it('dispose() refuses new sessions, waits for open ones, rolls back the rest and closes the pool', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 3 } });
    const SessionLocal = sessionmaker(engine);
    await engine.autocommit(() => engine.sequelize.query('CREATE TABLE disposal (v text)'));
    const finishing = SessionLocal.begin(async () => {
      await engine.sequelize.query("INSERT INTO disposal VALUES ('finished in time')");
      await new Promise((r) => setTimeout(r, 100));
    });
    const stuck = SessionLocal();
    await stuck.run(() => engine.sequelize.query("INSERT INTO disposal VALUES ('stuck')"));
    await new Promise((r) => setTimeout(r, 10));
    const disposing = engine.dispose({ timeoutMs: 400 });
    expect(() => SessionLocal()).toThrow(EngineDisposedError);
    await finishing;
    await disposing;
    expect(engine.stats().pool.size).toBe(0);
    expect(stuck.state).toBe('closed');
    expect(() => stuck.run(() => engine.sequelize.query('SELECT 1'))).toThrow(SessionClosedError);
    const { rows } = await h.observer.query('SELECT v FROM disposal');
    expect(rows).toEqual([{ v: 'finished in time' }]);
    await h.observer.query('DROP TABLE disposal');
  });
});

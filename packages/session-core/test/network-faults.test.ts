import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitOutcomeUnknownError, PoolTimeoutError, ReplyTimeoutError, createEngine, httpErrorFor, sessionmaker, type Engine, type EngineOptions } from '../src/index.js';
import { optionsFromEnv, replyDeadlineMs, resolveEngineOptions } from '../src/config.js';
import { startFaultProxy, type FaultProxy } from '../src/testing/index.js';
import { useDatabase } from './support.js';

const h = useDatabase();
let proxy: FaultProxy;

beforeAll(async () => {
  proxy = await startFaultProxy({ port: Number(new URL(h.db.url).port || 5432), host: new URL(h.db.url).hostname });
});
afterAll(async () => {
  proxy.pass();
  await Promise.all(h.engines.map((e) => e.dispose({ timeoutMs: 1000 })));
  h.engines.length = 0;
  await proxy.close();
});

/** An engine whose connections go through the fault proxy. */
function proxied(options: EngineOptions = {}): Engine {
  proxy.pass();
  const engine = createEngine(proxy.url(h.db.url), { pool: { max: 2, acquireTimeoutMs: 5000 }, ...options });
  h.engines.push(engine);
  return engine;
}

async function pidOf(engine: Engine, SessionLocal = sessionmaker(engine)): Promise<number> {
  return SessionLocal.begin(async () => {
    const [rows] = (await engine.sequelize.query('SELECT pg_backend_pid() AS pid')) as [Array<{ pid: number }>, unknown];
    return rows[0]!.pid;
  });
}

/** Backends of a destroyed connection end once the server notices: wait for it (the after-each check looks). */
async function noIdleInTransaction(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'");
    if (rows[0].n === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function backendGone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const { rows } = await h.observer.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [pid]);
    if (rows[0].n === 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('reply deadline: a silent network never leaves a statement pending', () => {
  it('fails the statement with ReplyTimeoutError, destroys its connection, and the next session succeeds', async () => {
    const engine = proxied({ statementTimeoutMs: 300, replyTimeoutMarginMs: 200 });
    const SessionLocal = sessionmaker(engine);
    const oldPid = await pidOf(engine, SessionLocal);
    proxy.silent();
    const error = await SessionLocal.begin(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplyTimeoutError);
    expect((error as ReplyTimeoutError).code).toBe('REPLY_TIMEOUT');
    expect((error as ReplyTimeoutError).timeoutMs).toBe(500);
    // the connection was destroyed, not returned: nothing in use, nothing idle in the pool
    expect(engine.stats().pool).toMatchObject({ inUse: 0, idle: 0 });
    expect(await backendGone(oldPid)).toBe(true);
    // adapters answer 503 with Retry-After
    expect(httpErrorFor(error)).toMatchObject({ status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_unavailable' } });
    proxy.pass();
    const newPid = await pidOf(engine, SessionLocal);
    expect(newPid).not.toBe(oldPid);
  });

  it('starts when the statement is written, not while it waits behind another on the connection', async () => {
    const engine = proxied({ statementTimeoutMs: 1200, replyTimeoutMarginMs: 300 });
    const session = sessionmaker(engine)();
    await session.begin();
    const connection = session.heldConnection!;
    // two statements queued at once on one client: 0.9 s each, 1.8 s together, deadline 1.5 s each
    await expect(Promise.all([connection.query('SELECT pg_sleep(0.9)'), connection.query('SELECT pg_sleep(0.9)')])).resolves.toHaveLength(2);
    await session.close();
  });

  it('is raised by a session whose settings.statement_timeout raises the server timeout', async () => {
    // deadline 200 + 1000 ms; with the session's 2000 ms: 3000 ms
    const engine = proxied({ statementTimeoutMs: 200, replyTimeoutMarginMs: 1000 });
    const Slow = sessionmaker(engine, { settings: { statement_timeout: '2000' } });
    await expect(Slow.begin(() => engine.sequelize.query('SELECT pg_sleep(1.4)'))).resolves.toBeDefined();
    // the engine's own 200 ms still applies elsewhere (the server cuts first: 57014, not a deadline)
    const error = await sessionmaker(engine)
      .begin(() => engine.sequelize.query('SELECT pg_sleep(1.4)'))
      .catch((e: unknown) => e);
    expect((error as { parent?: { code?: string } }).parent?.code).toBe('57014');
  });

  it('is derived from the effective server timeout, off without one unless set', () => {
    const resolve = (o: EngineOptions) => resolveEngineOptions(o);
    expect(replyDeadlineMs(resolve({}))).toBeUndefined();
    expect(replyDeadlineMs(resolve({ statementTimeoutMs: 5000 }))).toBe(6000);
    expect(replyDeadlineMs(resolve({ statementTimeoutMs: 5000 }), { statement_timeout: '10s' })).toBe(11_000);
    expect(replyDeadlineMs(resolve({ statementTimeoutMs: 5000 }), { statement_timeout: '100' })).toBe(6000);
    expect(replyDeadlineMs(resolve({ statementTimeoutMs: 5000 }), { statement_timeout: '0' })).toBeUndefined();
    expect(replyDeadlineMs(resolve({}), { statement_timeout: '2min' })).toBe(121_000);
    expect(replyDeadlineMs(resolve({ replyTimeoutMs: 3000 }))).toBe(3000);
    expect(replyDeadlineMs(resolve({ replyTimeoutMs: 3000, statementTimeoutMs: 5000 }))).toBe(6000);
    expect(replyDeadlineMs(resolve({ replyTimeoutMs: 0, statementTimeoutMs: 5000 }))).toBeUndefined();
    const env = optionsFromEnv({
      DATABASE_URL: 'postgres://u@h/d',
      DB_CONNECT_TIMEOUT_MS: '1500',
      DB_REPLY_TIMEOUT_MS: '4000',
      DB_REPLY_TIMEOUT_MARGIN_MS: '250',
      DB_KEEPALIVE_MS: '0',
      DB_POOL_VALIDATE_IDLE_MS: '100',
    });
    expect(env.options).toMatchObject({ connectTimeoutMs: 1500, replyTimeoutMs: 4000, replyTimeoutMarginMs: 250, keepAliveMs: 0, pool: { validateIdleMs: 100 } });
    expect(resolve({})).toMatchObject({ connectTimeoutMs: 10_000, keepAliveMs: 30_000, replyTimeoutMs: undefined, replyTimeoutMarginMs: 1000, pool: { validateIdleMs: 5000 } });
  });

  it('the connect deadline ends a connection attempt into a silent network', async () => {
    const engine = proxied({ connectTimeoutMs: 1000 });
    proxy.silent();
    const error = await sessionmaker(engine)
      .begin(() => engine.sequelize.query('SELECT 1'))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toMatch(/Connection/);
    proxy.pass();
    await expect(pidOf(engine)).resolves.toBeGreaterThan(0);
  });
});

describe('COMMIT whose reply never came: outcome unknown', () => {
  beforeAll(async () => {
    await h.engine.sequelize.query('CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)');
  });

  it('throws CommitOutcomeUnknownError, runs no hooks, is not retried, answers 500 without Retry-After', async () => {
    const engine = proxied({ statementTimeoutMs: 1000, replyTimeoutMarginMs: 500 });
    const SessionLocal = sessionmaker(engine);
    const ran: string[] = [];
    const errors: Array<{ phase: string }> = [];
    SessionLocal.on('error', (e) => errors.push(e));
    const before = engine.stats().sessions;
    let calls = 0;
    const error = await SessionLocal.begin(
      async (db) => {
        calls++;
        await engine.sequelize.query("INSERT INTO notes (body) VALUES ('silent commit')");
        db.afterCommit(() => ran.push('afterCommit'));
        db.afterRollback(() => ran.push('afterRollback'));
        proxy.silent();
      },
      { retry: { attempts: 3 } },
    ).catch((e: unknown) => e);
    proxy.pass();
    await noIdleInTransaction();
    expect(error).toBeInstanceOf(CommitOutcomeUnknownError);
    expect((error as CommitOutcomeUnknownError).code).toBe('COMMIT_OUTCOME_UNKNOWN');
    expect((error as CommitOutcomeUnknownError).cause).toBeInstanceOf(ReplyTimeoutError);
    expect((error as CommitOutcomeUnknownError).droppedHooks).toBe(1);
    expect(calls).toBe(1);
    expect(ran).toEqual([]);
    expect(errors.map((e) => e.phase)).toEqual(['commit']);
    const after = engine.stats().sessions;
    expect(after.committed - before.committed).toBe(0);
    expect(after.rolledBack - before.rolledBack).toBe(0);
    expect(httpErrorFor(error)).toEqual({ status: 500, headers: {}, body: expect.objectContaining({ error: 'commit_outcome_unknown' }) });
    // the COMMIT never reached the server here (dropped): the server rolled back when the connection went
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM notes WHERE body = 'silent commit'");
    expect(rows[0].n).toBe(0);
  });

  it('engine.dispose lets a COMMIT in flight finish instead of reporting a rollback', async () => {
    const engine = proxied({});
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal();
    await session.run(() => engine.sequelize.query("INSERT INTO notes (body) VALUES ('slow commit')"));
    proxy.latency(400);
    const committing = session.commit();
    await new Promise((r) => setTimeout(r, 50)); // COMMIT written, its reply 400 ms away
    await engine.dispose({ timeoutMs: 10 });
    await expect(committing).resolves.toBeUndefined();
    proxy.pass();
    expect(engine.stats().sessions).toMatchObject({ committed: 1, rolledBack: 0 });
    const { rows } = await h.observer.query("SELECT count(*)::int AS n FROM notes WHERE body = 'slow commit'");
    expect(rows[0].n).toBe(1);
  });

  it('engine.dispose reports outcome unknown when a COMMIT in flight cannot finish', async () => {
    const engine = proxied({ statementTimeoutMs: 1000, replyTimeoutMarginMs: 500 });
    const SessionLocal = sessionmaker(engine);
    const phases: string[] = [];
    SessionLocal.on('error', (e) => phases.push(e.phase));
    const session = SessionLocal();
    await session.run(() => engine.sequelize.query("INSERT INTO notes (body) VALUES ('lost commit')"));
    proxy.silent();
    const committing = session.commit().catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await engine.dispose({ timeoutMs: 10 });
    proxy.pass();
    expect(await committing).toBeInstanceOf(CommitOutcomeUnknownError);
    expect(phases).toEqual(['commit']);
    await noIdleInTransaction();
    expect(engine.stats().sessions).toMatchObject({ committed: 0, rolledBack: 0, open: 0 });
  });
});

describe('a stale pooled connection never fails a request', () => {
  it('after a network reset the next session gets a fresh connection', async () => {
    const engine = proxied({ pool: { max: 1, validateIdleMs: 0 } });
    const SessionLocal = sessionmaker(engine);
    const oldPid = await pidOf(engine, SessionLocal);
    expect(proxy.connections).toBeGreaterThan(0);
    proxy.reset();
    const newPid = await pidOf(engine, SessionLocal);
    expect(newPid).not.toBe(oldPid);
  });

  it("retries a session's first statement on a fresh connection when the stale one answered nothing", async () => {
    const engine = proxied({ pool: { max: 1, validateIdleMs: 0 } });
    const SessionLocal = sessionmaker(engine);
    const Tenant = sessionmaker(engine, { settings: { 'app.tenant': '7' } });
    const oldPid = await pidOf(engine, SessionLocal);
    proxy.forget(); // the path forgot the connection: the next write is answered with a reset
    const newPid = await pidOf(engine, SessionLocal);
    expect(newPid).not.toBe(oldPid);
    proxy.forget(); // same with settings (BEGIN and set_config sent before the first statement)
    await expect(pidOf(engine, Tenant)).resolves.not.toBe(newPid);
  });

  it('never retries a statement after the session already talked to the server', async () => {
    const engine = proxied({ pool: { max: 1, validateIdleMs: 0 } });
    const session = sessionmaker(engine)();
    await session.run(() => engine.sequelize.query('SELECT 1'));
    proxy.forget();
    await expect(session.run(() => engine.sequelize.query('SELECT 2'))).rejects.toThrow(/terminated|ECONNRESET|closed|EPIPE/i);
    await session.close();
    expect(engine.stats().pool.inUse).toBe(0);
    await noIdleInTransaction();
  });

  it('a session opened after the network returns survives every connection attempt left over from the silence', async () => {
    // chaos (60 s, express-shop GET /orders/:id -> 500 internal_error after the silent fault): the
    // pool rejects its first waiter with the failure of *any* connection attempt, so one session
    // that arrives after the network returned was handed the timeouts of several attempts started
    // during the silence, one after another, and gave up after 3 ('timeout expired').
    const max = 4;
    const engine = proxied({ pool: { max, acquireTimeoutMs: 500 }, connectTimeoutMs: 1500 });
    const SessionLocal = sessionmaker(engine);
    await pidOf(engine, SessionLocal); // Sequelize's first connection (server version) bypasses the pool
    proxy.reset(); // the pool now holds nothing usable
    await new Promise((r) => setTimeout(r, 50));
    proxy.silent();
    // `max` attempts whose startup packets are dropped; their sessions give up after 500 ms, the attempts run on
    const during = await Promise.all(Array.from({ length: max }, () => SessionLocal.begin(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e)));
    for (const error of during) expect(error).toBeInstanceOf(PoolTimeoutError);
    await new Promise((r) => setTimeout(r, 700)); // 1.2 s after they started: the attempts time out at 1.5 s
    proxy.pass();
    const after = SessionLocal.begin(async () => {
      const [rows] = (await engine.sequelize.query('SELECT pg_backend_pid() AS pid')) as [Array<{ pid: number }>, unknown];
      return rows[0]!.pid;
    });
    await expect(after).resolves.toBeGreaterThan(0);
    expect(engine.stats().sessions.open).toBe(0);
  });

  it('retrying failed connection attempts never takes a session past acquireTimeoutMs + connectTimeoutMs', async () => {
    // each attempt into the silent network fails after connectTimeoutMs; retries must stop in time
    const acquireTimeoutMs = 1000;
    const connectTimeoutMs = 300;
    const engine = proxied({ pool: { max: 50, acquireTimeoutMs }, connectTimeoutMs });
    const SessionLocal = sessionmaker(engine);
    await pidOf(engine, SessionLocal);
    proxy.reset();
    await new Promise((r) => setTimeout(r, 50));
    proxy.silent();
    const started = performance.now();
    const error = await SessionLocal.begin(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    const elapsed = performance.now() - started;
    proxy.pass();
    expect(error).toBeInstanceOf(Error);
    expect(elapsed).toBeLessThan(acquireTimeoutMs + connectTimeoutMs);
    await expect(pidOf(engine, SessionLocal)).resolves.toBeGreaterThan(0);
  });

  it('validates a connection idle longer than pool.validateIdleMs before handing it out', async () => {
    // engine.ping() has no session (no first-statement retry): only validation can save it
    const control = proxied({ pool: { max: 1, validateIdleMs: 0 } });
    const engine = proxied({ pool: { max: 1, validateIdleMs: 100 } });
    await control.ping();
    await engine.ping();
    proxy.forget();
    await new Promise((r) => setTimeout(r, 150)); // idle past validateIdleMs
    await expect(control.ping()).rejects.toThrow(/terminated|ECONNRESET|closed|EPIPE/i);
    await expect(engine.ping()).resolves.toBeGreaterThan(0);
  });
});

describe('abandoned requests shed their work', () => {
  it('a session aborted while waiting for the pool does not open when a connection frees up', async () => {
    const engine = proxied({ pool: { max: 1, acquireTimeoutMs: 5000 } });
    const SessionLocal = sessionmaker(engine);
    const holder = SessionLocal();
    await holder.begin();
    const waiting = SessionLocal();
    const query = waiting.run(() => engine.sequelize.query('SELECT 1')).catch((e: unknown) => e);
    for (let i = 0; i < 100 && engine.stats().pool.waiting === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(engine.stats().pool.waiting).toBe(1);
    const reason = new DOMException('client gone', 'AbortError');
    waiting.abort(reason);
    const opened = engine.stats().sessions.opened;
    await holder.close();
    expect(await query).toBe(reason);
    expect(engine.stats().sessions.opened).toBe(opened);
    expect(waiting.inTransaction).toBe(false);
    await waiting.close();
    expect(engine.stats().pool.inUse).toBe(0);
  });
});

import { SpanStatusCode } from '@opentelemetry/api';
import { createEngine, type Engine, type SessionFactory, sessionmaker } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Instrumentation, instrument } from '../src/index.js';
import { type Histogram, telemetry, valueAt } from './support.js';

const otel = telemetry();
let db: TestDatabase;
let engine: Engine;
let SessionLocal: SessionFactory;
let instrumentation: Instrumentation;
let pool: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
  engine = createEngine(db.url, { pool: { max: 2, acquireTimeoutMs: 300 } });
  SessionLocal = sessionmaker(engine, { leakWarningMs: 200 });
  instrumentation = instrument(SessionLocal, { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider });
  const url = new URL(db.url);
  pool = { 'db.client.connection.pool.name': `${url.hostname}:${url.port || 5432}${url.pathname}` };
  await engine.autocommit(() =>
    engine.sequelize.query('CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)'),
  );
});

afterEach(() => otel.reset());

afterAll(async () => {
  instrumentation?.disable();
  await engine?.dispose();
  await db?.drop();
  await otel.shutdown();
});

describe('session spans', () => {
  it('one span per session that queried, child of the span active at its first statement, with the semantic-convention attributes', async () => {
    const parent = otel.tracer.startSpan('parent');
    const { trace, context } = await import('@opentelemetry/api');
    const id = await context.with(trace.setSpan(context.active(), parent), () =>
      SessionLocal.begin(async (session) => {
        await engine.sequelize.query('SELECT 1');
        await engine.sequelize.query('SELECT 2');
        return session.id;
      }),
    );
    parent.end();
    const [span, ...more] = await otel.sessionSpans();
    expect(more).toEqual([]);
    expect(span!.parentSpanContext?.spanId).toBe(parent.spanContext().spanId);
    expect(span!.spanContext().traceId).toBe(parent.spanContext().traceId);
    const database = new URL(db.url).pathname.slice(1);
    expect(span!.attributes).toMatchObject({
      'db.system.name': 'postgresql',
      'db.namespace': database,
      'server.address': new URL(db.url).hostname,
      'sessionlocal.session.id': id,
      'sessionlocal.session.outcome': 'commit',
      'sessionlocal.session.read_only': false,
    });
    expect(span!.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('the span counts the transactions and savepoints of the session', async () => {
    const session = SessionLocal();
    let committedAt = 0;
    await session.run(async () => {
      await engine.sequelize.query('SELECT 1');
      await engine.sequelize.transaction(async () => {
        await engine.sequelize.transaction(() => engine.sequelize.query('SELECT 2'));
      });
      await session.commit();
      committedAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 20));
      await engine.sequelize.query('SELECT 3');
    });
    await session.close();
    const spans = await otel.sessionSpans();
    expect(spans).toHaveLength(1); // one span for the session, not one per transaction
    const [seconds, nanos] = spans[0]!.startTime;
    expect(seconds * 1000 + nanos / 1e6).toBeLessThan(committedAt); // it began with the first transaction
    expect(spans[0]!.attributes).toMatchObject({ 'sessionlocal.session.transactions': 2, 'sessionlocal.session.savepoints': 2 });
  });

  it('statements run with the session span active, so pg statement spans are its children', async () => {
    const { trace } = await import('@opentelemetry/api');
    const active: Array<string | undefined> = [];
    const probe = () => void active.push(trace.getActiveSpan()?.spanContext().spanId);
    (engine.sequelize as unknown as { addHook(name: string, key: string, fn: () => void): void }).addHook('beforeQuery', 'otel-probe', probe);
    try {
      await SessionLocal.begin(async () => {
        await engine.sequelize.query('SELECT 1');
        await Promise.all([engine.sequelize.query('SELECT 2'), engine.sequelize.query('SELECT 3')]);
      });
    } finally {
      (engine.sequelize as unknown as { removeHook(name: string, key: string): void }).removeHook('beforeQuery', 'otel-probe');
    }
    const [span] = await otel.sessionSpans();
    expect(active).toHaveLength(3);
    expect(new Set(active)).toEqual(new Set([span!.spanContext().spanId]));
  });

  it('makes no span for a session that never queried', async () => {
    await SessionLocal.begin(async () => 'nothing');
    const lazy = SessionLocal();
    await lazy.close();
    expect(await otel.sessionSpans()).toEqual([]);
  });

  it('names the isolation level and read-only of the session', async () => {
    await SessionLocal.begin(() => engine.sequelize.query('SELECT 1'), { readOnly: true, isolationLevel: 'SERIALIZABLE' });
    const [span] = await otel.sessionSpans();
    expect(span!.attributes).toMatchObject({ 'sessionlocal.session.read_only': true, 'sessionlocal.session.isolation_level': 'SERIALIZABLE', 'sessionlocal.session.outcome': 'commit' });
  });

  it('marks a rollback on throw as outcome rollback, and a failed COMMIT as an error with the exception', async () => {
    await expect(
      SessionLocal.begin(async () => {
        await engine.sequelize.query('SELECT 1');
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    await expect(SessionLocal.begin(() => engine.sequelize.query('INSERT INTO child VALUES (1, 999)'))).rejects.toThrow();
    const [thrown, failedCommit] = await otel.sessionSpans();
    expect(thrown!.attributes['sessionlocal.session.outcome']).toBe('rollback');
    expect(thrown!.status.code).toBe(SpanStatusCode.UNSET);
    expect(failedCommit!.attributes['sessionlocal.session.outcome']).toBe('rollback');
    expect(failedCommit!.status.code).toBe(SpanStatusCode.ERROR);
    expect(failedCommit!.attributes['error.type']).toBeTypeOf('string');
    const exception = failedCommit!.events.find((event) => event.name === 'exception');
    expect(String(exception?.attributes?.['exception.message'])).toMatch(/commit|foreign key|violates/i);
  });

  it('adds a leak event to the span of a session that holds its connection past leakWarningMs', async () => {
    await SessionLocal.begin(async () => {
      await engine.sequelize.query('SELECT 1');
      await new Promise((resolve) => setTimeout(resolve, 300));
    });
    const [span] = await otel.sessionSpans();
    expect(span!.events.map((event) => event.name)).toContain('sessionlocal.leak');
    expect(valueAt(await otel.points('sessionlocal.session.leaks'), pool)).toBeGreaterThanOrEqual(1);
  });
});

describe('pool metrics', () => {
  it('reports connection counts by state, pending requests, wait and use times, timeouts, commits and rollbacks', async () => {
    const commitsBefore = valueAt(await otel.points('sessionlocal.session.commits'), pool) ?? 0;
    const rollbacksBefore = valueAt(await otel.points('sessionlocal.session.rollbacks'), pool) ?? 0;
    const waitsBefore = (await otel.points<Histogram>('db.client.connection.wait_time'))[0]?.value.count ?? 0;
    // hold both connections, then make a third session wait for one until it times out
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const holders = [0, 1].map(() =>
      SessionLocal.begin(async () => {
        await engine.sequelize.query('SELECT 1');
        await held;
      }),
    );
    while (engine.stats().pool.inUse < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    const waiter = SessionLocal.begin(() => engine.sequelize.query('SELECT 1')).catch((error: unknown) => error);
    while (engine.stats().pool.waiting < 1) await new Promise((resolve) => setTimeout(resolve, 10));

    const count = await otel.points('db.client.connection.count');
    expect(valueAt(count, { ...pool, 'db.client.connection.state': 'used' })).toBe(2);
    expect(valueAt(count, { ...pool, 'db.client.connection.state': 'idle' })).toBe(0);
    expect(valueAt(await otel.points('db.client.connection.pending_requests'), pool)).toBe(1);
    expect(valueAt(await otel.points('db.client.connection.max'), pool)).toBe(2);

    expect(((await waiter) as Error).name).toBe('PoolTimeoutError');
    expect(valueAt(await otel.points('db.client.connection.timeouts'), pool)).toBe(1);
    // the timeout is in the trace too: a failed session span, the only one ended so far
    const [timedOut, ...none] = await otel.sessionSpans();
    expect(none).toEqual([]);
    expect(timedOut!.attributes).toMatchObject({ 'sessionlocal.session.outcome': 'pool_timeout', 'error.type': 'PoolTimeoutError' });
    expect(timedOut!.status.code).toBe(SpanStatusCode.ERROR);
    release();
    await Promise.all(holders);
    await expect(
      SessionLocal.begin(async () => {
        await engine.sequelize.query('SELECT 1');
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');

    expect(valueAt(await otel.points('sessionlocal.session.commits'), pool)).toBe(commitsBefore + 2);
    expect(valueAt(await otel.points('sessionlocal.session.rollbacks'), pool)).toBe(rollbacksBefore + 1);
    const [wait] = await otel.points<Histogram>('db.client.connection.wait_time');
    expect(wait!.value.count).toBe(waitsBefore + 3);
    const [use] = await otel.points<Histogram>('db.client.connection.use_time');
    expect(use!.value.count).toBeGreaterThanOrEqual(3);
    expect(use!.value.sum).toBeGreaterThan(0);
    const idleAfter = valueAt(await otel.points('db.client.connection.count'), { ...pool, 'db.client.connection.state': 'used' });
    expect(idleAfter).toBe(0);
  });

  it('disable() stops the spans', async () => {
    const other = sessionmaker(engine);
    const off = instrument(other, { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider });
    off.disable();
    await other.begin(() => engine.sequelize.query('SELECT 1'));
    expect(await otel.sessionSpans()).toEqual([]);
  });
});

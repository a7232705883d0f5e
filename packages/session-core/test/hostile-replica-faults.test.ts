import { QueryTypes } from 'sequelize';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaUnavailableError, ReplyTimeoutError, sessionmaker, type Engine, type EngineOptions, type Session } from '../src/index.js';
import { httpErrorFor } from '../src/adapter/index.js';
import { startFaultProxy, startStreamingReplica, streamingReplicaUnsupported, type FaultProxy, type StreamingReplica } from '../src/testing/index.js';
import { elapsed, Engines, everything, noneInTransaction, replicaStats, served, sleep, waitFor, waitForState } from './hostile-replica-support.js';

/**
 * Hostile second opinion on replica health (docs/production.md "Health", "Lag", "Fallback"):
 * a silent replica costs at most checkIntervalMs + checkTimeoutMs, a killed one fails only the
 * statements in flight, paused replay makes it `lagging` beyond maxLagMs, and nothing is left
 * open or idle in transaction on either server afterwards.
 */
const unsupported = streamingReplicaUnsupported();
const CHECK_INTERVAL_MS = 300;
const CHECK_TIMEOUT_MS = 700;
/** What "at once" and "at most checkIntervalMs + checkTimeoutMs" get on a loaded 2-core machine. */
const MARGIN_MS = 2_500;

describe.skipIf(unsupported !== undefined)('hostile: replica faults', () => {
  let pair: StreamingReplica;
  let proxy: FaultProxy;
  const engines = new Engines();
  const events: Array<{ url: string; state: string; streaming?: boolean; cause?: string; lagMs?: number }> = [];

  beforeAll(async () => {
    pair = await startStreamingReplica();
    await pair.primary.query('CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)');
    await pair.caughtUp();
    proxy = await startFaultProxy({ port: pair.standby.port });
  }, 120_000);
  afterEach(async () => {
    proxy.pass();
    await engines.disposeAll();
    events.length = 0;
  });
  afterAll(async () => {
    await proxy?.close();
    await pair?.stop();
  });

  async function engineOn(url: string, options: EngineOptions = {}): Promise<Engine> {
    const engine = engines.make(pair.primary.url, {
      replicas: [url],
      ...options,
      replicaOptions: { checkIntervalMs: CHECK_INTERVAL_MS, checkTimeoutMs: CHECK_TIMEOUT_MS, onStateChange: (e) => events.push(e), ...options.replicaOptions },
    });
    await engine.ping({ replicas: true });
    await waitForState(engine, 'up');
    return engine;
  }

  const has = (engine: Engine, name: string) =>
    engine.sequelize.query<{ n: number }>('SELECT count(*)::int AS n FROM items WHERE name = $1', { bind: [name], type: QueryTypes.SELECT }).then((rows) => rows[0]?.n);

  it('a silent replica: the read in flight fails with ReplicaUnavailableError, new sessions go to the primary, within checkIntervalMs + checkTimeoutMs', async () => {
    const engine = await engineOn(proxy.url(pair.standby.url));
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const held = SessionLocal();
    try {
      expect((await held.run(() => served(engine))).standby).toBe(true);
      proxy.silent();
      const [inFlight, fresh] = await Promise.all([
        elapsed(() => held.run(() => served(engine))),
        // a session opened as the silence starts (its first statement may take a pooled connection of the silent replica)
        elapsed(() => SessionLocal.begin(() => served(engine))),
      ]);
      expect(inFlight.error).toBeInstanceOf(ReplicaUnavailableError);
      expect(inFlight.ms).toBeLessThan(CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS + MARGIN_MS);
      expect(everything(fresh.error)).toBe('');
      expect(fresh.value?.standby).toBe(false);
      expect(fresh.ms).toBeLessThan(CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS + MARGIN_MS);
      const down = replicaStats(engine);
      expect(down.state).toBe('down');
      expect(down.cause).toBeTruthy();
      expect(events.some((e) => e.state === 'down')).toBe(true);

      // while it is down: at once to the primary; ping reports it and does not reject
      const quick = await elapsed(() => SessionLocal.begin(() => served(engine)));
      expect(quick.value?.standby).toBe(false);
      expect(quick.ms).toBeLessThan(1_000 + MARGIN_MS / 2);
      const ping = await elapsed(() => engine.ping({ replicas: true }));
      expect(everything(ping.error)).toBe('');
      expect(ping.value?.replicas[0]?.state).toBe('down');
      expect(ping.value?.replicas[0]?.error).toBeTruthy();
      expect(ping.ms).toBeLessThan(CHECK_TIMEOUT_MS + MARGIN_MS);
      const erroring = engines.make(pair.primary.url, {
        replicas: [proxy.url(pair.standby.url)],
        replicaOptions: { checkIntervalMs: CHECK_INTERVAL_MS, checkTimeoutMs: CHECK_TIMEOUT_MS, fallback: 'error', onStateChange: () => {} },
      });
      const Erroring = sessionmaker(erroring, { readOnly: true });
      const refused = await elapsed(() => Erroring.begin(() => 1));
      // a session that never queries does not touch the replica; one that queries is refused with 503
      expect(refused.value).toBe(1);
      const refusedQuery = await elapsed(() => Erroring.begin(() => served(erroring)));
      expect(refusedQuery.error).toBeInstanceOf(ReplicaUnavailableError);
      expect((refusedQuery.error as ReplicaUnavailableError).status).toBe(503);
      expect(refusedQuery.ms).toBeLessThan(CHECK_INTERVAL_MS + 2 * CHECK_TIMEOUT_MS + MARGIN_MS);
    } finally {
      await held.close();
    }

    // back: the first check that answers brings it up
    proxy.pass();
    await waitForState(engine, 'up', 10_000);
    expect((await SessionLocal.begin(() => served(engine))).standby).toBe(true);
    expect(engine.stats().sessions.open).toBe(0);
    expect(engine.stats().pool.inUse).toBe(0);
    await noneInTransaction(pair);
  });

  it('a replica killed mid-statement: the statement in flight fails (no hang), reads go on from the primary, and it comes back', async () => {
    const engine = await engineOn(pair.standby.url);
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const held = SessionLocal();
    try {
      expect((await held.run(() => served(engine))).standby).toBe(true);
      const sleeping = elapsed(() => held.run(() => engine.sequelize.query('SELECT pg_sleep(20)')));
      // a session whose first statement is in flight when the server dies: nothing of it ran, it runs once more elsewhere
      const first = elapsed(() => SessionLocal.begin(() => engine.sequelize.query<{ standby: boolean }>('SELECT pg_sleep(1), pg_is_in_recovery() AS standby', { type: QueryTypes.SELECT })));
      await sleep(300);
      await pair.standby.stop('immediate');
      const killed = await sleeping;
      expect(killed.error).toBeDefined();
      expect(killed.ms).toBeLessThan(5_000);
      const again = await first;
      expect(everything(again.error)).toBe('');
      expect(again.value?.[0]?.standby).toBe(false);
      const meanwhile = await elapsed(() => SessionLocal.begin(() => served(engine)));
      expect(everything(meanwhile.error)).toBe('');
      expect(meanwhile.value?.standby).toBe(false);
      await waitForState(engine, 'down', 5_000);
    } finally {
      await held.close();
      if (!pair.standby.running) await pair.standby.start();
    }
    await waitForState(engine, 'up', 30_000);
    expect((await SessionLocal.begin(() => served(engine))).standby).toBe(true);
    expect(engine.stats().sessions.open).toBe(0);
    await noneInTransaction(pair);
  });

  // BREAK (found by hostile-replica-flap; fixed in src/session.ts + src/engine.ts): after a network
  // reset cut every pooled connection, a session's first statement failed on a dead pooled
  // connection, ran "once more" on another dead pooled one and failed with "write ECONNRESET":
  // the retry was not on a fresh connection, and a stale pooled connection failed the request.
  for (const target of ['replica', 'primary'] as const) {
    it(`every pooled connection cut at once (${target}): the next session's first statement runs once more on a live connection`, async () => {
      const cut = await startFaultProxy({ port: target === 'replica' ? pair.standby.port : pair.primary.port });
      try {
        const engine =
          target === 'replica'
            ? await engineOn(cut.url(pair.standby.url))
            : engines.make(cut.url(pair.primary.url), { replicas: [pair.standby.url], replicaOptions: { checkIntervalMs: CHECK_INTERVAL_MS, onStateChange: () => {} } });
        const SessionLocal = sessionmaker(engine, { readOnly: target === 'replica' });
        const warm = [SessionLocal(), SessionLocal(), SessionLocal(), SessionLocal()];
        await Promise.all(warm.map((s) => s.run(() => served(engine))));
        await Promise.all(warm.map((s) => s.close()));
        expect(target === 'replica' ? replicaStats(engine).idle : engine.stats().pools?.primary.idle).toBe(4);
        cut.reset();
        const result = await elapsed(() => SessionLocal.begin(() => engine.sequelize.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby', { type: QueryTypes.SELECT })));
        expect(everything(result.error)).toBe('');
        expect(result.value?.[0]?.standby).toBe(target === 'replica');
      } finally {
        await cut.close();
      }
    });
  }

  // BREAK (found by hostile-replica-flap; fixed in src/session.ts): a session whose first statement
  // died took a fresh connection before giving back the dead one, so when every connection of the
  // pool died under sessions at once (a reset with pool.max first statements in flight), each waited
  // for a slot the others held: PoolTimeoutError after acquireTimeoutMs for all of them.
  it('every connection of a full pool cut under first statements in flight: each runs once more, none waits for the others', async () => {
    const cut = await startFaultProxy({ port: pair.standby.port });
    try {
      const acquireTimeoutMs = 3_000;
      const engine = await engineOn(cut.url(pair.standby.url), { pool: { max: 2, acquireTimeoutMs } });
      const SessionLocal = sessionmaker(engine, { readOnly: true });
      const reads = [1, 2].map(() => elapsed(() => SessionLocal.begin(() => engine.sequelize.query('SELECT pg_sleep(0.5)'))));
      await waitFor('both statements in flight', 5_000, () => replicaStats(engine).inUse === 2);
      await sleep(100);
      cut.reset();
      for (const r of await Promise.all(reads)) {
        expect(everything(r.error)).toBe('');
        expect(r.ms).toBeLessThan(acquireTimeoutMs);
      }
    } finally {
      await cut.close();
    }
  });

  // BREAK (found by hostile-replica-flap; fixed in src/request-scope.ts): the COMMIT of a read-only
  // session whose replica was marked down under it failed with CommitError, which adapters answer
  // 500 commit_failed ("nothing was saved", no Retry-After) instead of 503 replica_unavailable.
  it('a read-only COMMIT cut by its replica going silent answers 503 with Retry-After, not 500 commit_failed', async () => {
    const engine = await engineOn(proxy.url(pair.standby.url));
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const held = SessionLocal();
    try {
      expect((await held.run(() => served(engine))).standby).toBe(true);
      proxy.silent();
      const commit = await elapsed(() => held.commit());
      expect(commit.error).toBeDefined();
      expect(commit.ms).toBeLessThan(CHECK_INTERVAL_MS + CHECK_TIMEOUT_MS + MARGIN_MS);
      const answer = httpErrorFor(commit.error);
      expect(answer?.status).toBe(503);
      expect(answer?.headers['retry-after']).toMatch(/^\d+$/);
    } finally {
      await held.close();
      proxy.pass();
    }
  });

  it('paused replay: beyond maxLagMs the replica is lagging and skipped (reads see the new write on the primary); resumed, it is up again', async () => {
    const maxLagMs = 800;
    const engine = await engineOn(pair.standby.url, { replicaOptions: { maxLagMs } });
    const erroring = await engineOn(pair.standby.url, { replicaOptions: { maxLagMs, fallback: 'error' } });
    const Erroring = sessionmaker(erroring, { readOnly: true });
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const Writer = sessionmaker(engine, { readYourWrites: true });
    await pair.standby.query('SELECT pg_wal_replay_pause()');
    try {
      const started = performance.now();
      const writer = Writer();
      await writer.run(() => engine.sequelize.query("INSERT INTO items (name) VALUES ('paused')"));
      await writer.commit();
      await writer.close();
      // read-your-writes does not wait for the lag figure
      expect(await SessionLocal.begin(() => has(engine, 'paused'), { readYourWrites: true, minLsn: writer.commitLsn })).toBe(1);
      const lagging = await waitForState(engine, 'lagging', maxLagMs + 10 * CHECK_INTERVAL_MS + MARGIN_MS);
      // lag counts from the last check that saw it caught up (at most one interval before the write)
      expect(performance.now() - started).toBeGreaterThan(maxLagMs - CHECK_INTERVAL_MS - 100);
      expect(lagging.lagMs).toBeGreaterThan(maxLagMs);
      expect(lagging.cause).toContain('maxLagMs');
      expect(events.some((e) => e.state === 'lagging')).toBe(true);
      const read = await SessionLocal.begin(async () => ({ where: await served(engine), n: await has(engine, 'paused') }));
      expect(read).toEqual({ where: expect.objectContaining({ standby: false }), n: 1 });
      await waitFor('the erroring engine to see it lagging', 10_000, async () => {
        const r = await elapsed(() => Erroring.begin(() => served(erroring)));
        return r.error instanceof ReplicaUnavailableError && r.error.replicas[0]?.state === 'lagging';
      });
    } finally {
      await pair.standby.query('SELECT pg_wal_replay_resume()');
    }
    const up = await waitForState(engine, 'up', 10_000);
    expect(up.lagMs).toBeLessThanOrEqual(maxLagMs);
    const after = await SessionLocal.begin(async () => ({ where: await served(engine), n: await has(engine, 'paused') }));
    expect(after).toEqual({ where: expect.objectContaining({ standby: true }), n: 1 });
    await noneInTransaction(pair);
  });

  it('with background checks off, the reply deadline still bounds a statement on a silent replica', async () => {
    const statementTimeoutMs = 500;
    const engine = engines.make(pair.primary.url, {
      replicas: [proxy.url(pair.standby.url)],
      statementTimeoutMs,
      replyTimeoutMarginMs: 500,
      replicaOptions: { checkIntervalMs: 0, checkTimeoutMs: CHECK_TIMEOUT_MS, onStateChange: () => {} },
    });
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const held = SessionLocal();
    try {
      expect((await held.run(() => served(engine))).standby).toBe(true);
      proxy.silent();
      const result = await elapsed(() => held.run(() => served(engine)));
      expect(result.error).toBeInstanceOf(ReplyTimeoutError);
      expect(result.ms).toBeLessThan(statementTimeoutMs + 500 + MARGIN_MS);
    } finally {
      await held.close();
      proxy.pass();
    }
  });

  it('dispose while the replica is silent ends in bounded time and leaves no connection open', async () => {
    const engine = await engineOn(proxy.url(pair.standby.url));
    const SessionLocal = sessionmaker(engine, { readOnly: true });
    const held: Session[] = [SessionLocal(), SessionLocal()];
    for (const s of held) await s.run(() => served(engine));
    expect(proxy.connections).toBeGreaterThanOrEqual(3); // two sessions and the health check
    proxy.silent();
    const [first] = held as [Session, Session];
    const inFlight = elapsed(() => first.run(() => served(engine)));
    const disposed = await elapsed(() => engine.dispose({ timeoutMs: 1_000 }));
    expect(everything(disposed.error)).toBe('');
    expect(disposed.ms).toBeLessThan(1_000 + 2 * CHECK_TIMEOUT_MS + MARGIN_MS);
    expect((await inFlight).error).toBeDefined();
    const closed = await elapsed(() => Promise.all(held.map((s) => s.close())));
    expect(closed.ms).toBeLessThan(MARGIN_MS);
    await waitFor(`no proxied connection left (${proxy.connections})`, 5_000, () => proxy.connections === 0);
    proxy.pass();
    await waitFor(
      'no backend of the disposed engine on the standby',
      5_000,
      async () => (await pair.standby.query(`SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'hostile-replica%'`)).length === 0,
    );
  });
});

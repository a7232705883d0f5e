import { DataTypes, QueryTypes, type ModelStatic, type Model } from 'sequelize';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEngine, ReplicaUnavailableError, sessionmaker, type Engine, type EngineOptions } from '../src/index.js';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpErrorFor, openRequestScope, responseHolder } from '../src/adapter/index.js';
import { startFaultProxy, startStreamingReplica, streamingReplicaUnsupported, type FaultProxy, type StreamingReplica } from '../src/testing/index.js';

/**
 * Read replicas against a real hot standby streaming from its primary (both started by
 * `startStreamingReplica`, shared by the file). Faults of the replica go through a fault proxy
 * in front of the standby.
 */
const unsupported = streamingReplicaUnsupported();
if (unsupported) console.warn(`streaming-replica tests skipped: ${unsupported}`);
const suite = unsupported ? describe.skip : describe;

let pair: StreamingReplica;
let primaryUrl: string;
let standbyUrl: string;
const engines: Engine[] = [];
const DB = 'sl_replica_test';

function engineOf(options: EngineOptions = {}, replicaUrl = standbyUrl): Engine {
  const engine = createEngine(primaryUrl, { pool: { max: 4, acquireTimeoutMs: 3000 }, replicas: [replicaUrl], ...options });
  engines.push(engine);
  return engine;
}

function itemModel(engine: Engine): ModelStatic<Model> {
  return engine.sequelize.define('Item', { id: { type: DataTypes.INTEGER, primaryKey: true }, name: DataTypes.STRING }, { tableName: 'items', timestamps: false });
}

const inRecovery = async (engine: Engine) => ((await engine.sequelize.query('SELECT pg_is_in_recovery() AS r', { type: QueryTypes.SELECT })) as Array<{ r: boolean }>)[0]?.r;

suite(`read replicas on a real streaming standby${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  beforeAll(async () => {
    pair = await startStreamingReplica();
    await pair.primary.query(`CREATE DATABASE ${DB}`);
    await pair.primary.query('CREATE TABLE items (id int PRIMARY KEY, name text)', DB);
    await pair.caughtUp();
    primaryUrl = pair.primary.url.replace(/\/postgres$/, `/${DB}`);
    standbyUrl = pair.standbyUrl(primaryUrl);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(engines.map((e) => e.dispose({ timeoutMs: 1000 })));
    await pair?.stop();
  });

  it('routes read-only sessions to the standby; read-write sessions and statements outside sessions to the primary; writes on the standby fail with 25006', async () => {
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
    const SessionLocal = sessionmaker(engine);
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
    expect(await SessionLocal.begin(() => inRecovery(engine))).toBe(false);
    expect(await inRecovery(engine)).toBe(false);
    const write = SessionLocal.begin(() => engine.sequelize.query("INSERT INTO items VALUES (1, 'x')"), { readOnly: true });
    await expect(write).rejects.toMatchObject({ parent: { code: '25006' } });
    expect(engine.stats().pool.inUse).toBe(0);
  });

  it('read-your-writes: with a 1 s apply delay, reads after a commit miss the row without the mechanism and never with it (served by the primary when the standby is behind)', async () => {
    await pair.setApplyDelay(1000);
    try {
      const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
      const Item = itemModel(engine);
      const plain = sessionmaker(engine);
      const ryw = sessionmaker(engine, { readYourWrites: { maxWaitMs: 20 } });
      const tries = 10;
      let missedOff = 0;
      let missedOn = 0;
      let id = 1000;
      for (let i = 0; i < tries; i++) {
        const a = ++id;
        await plain.begin(() => Item.create({ id: a, name: 'off' }));
        if (!(await plain.begin(() => Item.findByPk(a), { readOnly: true }))) missedOff++;
        const b = ++id;
        const writer = ryw();
        await writer.run(() => Item.create({ id: b, name: 'on' }));
        await writer.commit();
        expect(writer.commitLsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
        await writer.close();
        const found = await ryw.begin(() => Item.findByPk(b), { readOnly: true, minLsn: writer.commitLsn });
        if (!found) missedOn++;
      }
      console.log(`read-your-writes, recovery_min_apply_delay 1000ms: missed ${missedOff}/${tries} without, ${missedOn}/${tries} with the mechanism`);
      expect(missedOn).toBe(0);
      expect(missedOff).toBe(tries);
    } finally {
      await pair.setApplyDelay(0);
    }
  });

  it('read-your-writes without added lag: never misses, and the standby serves once it replayed the commit', async () => {
    await pair.caughtUp();
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
    const Item = itemModel(engine);
    const plain = sessionmaker(engine);
    const ryw = sessionmaker(engine, { readYourWrites: { maxWaitMs: 1000 } });
    const tries = 40;
    let missedOff = 0;
    let missedOn = 0;
    let onStandby = 0;
    let id = 2000;
    for (let i = 0; i < tries; i++) {
      const a = ++id;
      await plain.begin(() => Item.create({ id: a, name: 'off' }));
      if (!(await plain.begin(() => Item.findByPk(a), { readOnly: true }))) missedOff++;
      const b = ++id;
      const writer = ryw();
      await writer.run(() => Item.create({ id: b, name: 'on' }));
      await writer.commit();
      await writer.close();
      const [found, standby] = await ryw.begin(async () => [await Item.findByPk(b), await inRecovery(engine)] as const, { readOnly: true, minLsn: writer.commitLsn });
      if (!found) missedOn++;
      if (standby) onStandby++;
    }
    console.log(`read-your-writes, no added lag: missed ${missedOff}/${tries} without, ${missedOn}/${tries} with the mechanism (${onStandby}/${tries} served by the standby)`);
    expect(missedOn).toBe(0);
    expect(onStandby).toBe(tries); // maxWaitMs 1000 is ample for an idle local standby
  });

  it('a read-only session reading what only it wrote reports no commitLsn; a session that only read gets none either', async () => {
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    const reader = SessionLocal();
    await reader.run(() => engine.sequelize.query('SELECT 1'));
    await reader.commit();
    expect(reader.commitLsn).toBeUndefined();
    await reader.close();
    const lsns: string[] = [];
    SessionLocal.on('commit', (e) => e.lsn && lsns.push(e.lsn));
    await SessionLocal.begin(() => engine.sequelize.query("INSERT INTO items VALUES (3000, 'evt')"));
    expect(lsns).toHaveLength(1);
  });

  it('across HTTP requests: the commit position travels in a cookie or header (set through the response holder) and the next read-only request sees its write', async () => {
    await pair.setApplyDelay(1000);
    let server: Server | undefined;
    try {
      const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
      const Item = itemModel(engine);
      const SessionLocal = sessionmaker(engine, { readYourWrites: { maxWaitMs: 20 } });
      const hold = responseHolder();
      const options = { factory: SessionLocal, readYourWrites: true as const, readOnly: (req: IncomingMessage) => req.method === 'GET' };
      server = createServer((req, res) => {
        const scope = openRequestScope(options, req);
        hold(res, () => scope);
        scope?.watch(res);
        void scope?.run(async () => {
          const id = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('id'));
          if (req.method === 'POST') {
            await Item.create({ id, name: 'http' });
            res.setHeader('set-cookie', 'theme=dark; Path=/');
            res.statusCode = 201;
            res.end('{}');
          } else {
            const found = Boolean(await Item.findByPk(id));
            res.end(JSON.stringify({ found, standby: await inRecovery(engine) }));
          }
        });
      });
      await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', () => resolve()));
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const posted = await fetch(`${base}/items?id=5001`, { method: 'POST' });
      expect(posted.status).toBe(201);
      const lsn = posted.headers.get('x-sessionlocal-lsn');
      expect(lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      const cookies = posted.headers.getSetCookie();
      expect(cookies).toContain('theme=dark; Path=/');
      expect(cookies).toContainEqual(`sl_lsn=${lsn}; Max-Age=60; Path=/; HttpOnly; SameSite=Lax`);
      // first the read without the token: the standby is 1 s behind, it must miss there
      const without = await (await fetch(`${base}/items?id=5001`)).json();
      const withCookie = await (await fetch(`${base}/items?id=5001`, { headers: { cookie: `theme=dark; sl_lsn=${lsn}` } })).json();
      const withHeader = await (await fetch(`${base}/items?id=5001`, { headers: { 'x-sessionlocal-lsn': String(lsn) } })).json();
      // once the standby replayed the commit it serves the token's reads itself: either way the row is found
      expect(withCookie).toMatchObject({ found: true });
      expect(withHeader).toMatchObject({ found: true });
      expect(without).toEqual({ found: false, standby: true });
      // a forged or garbage token costs at most maxWaitMs and a read on the primary, never an error
      const forged = await fetch(`${base}/items?id=5001`, { headers: { 'x-sessionlocal-lsn': 'FFFFFFFF/FFFFFFFF' } });
      expect(await forged.json()).toEqual({ found: true, standby: false });
      const garbage = await fetch(`${base}/items?id=5001`, { headers: { cookie: "sl_lsn='; DROP TABLE items" } });
      expect(garbage.status).toBe(200);
      expect(engine.stats().pool.inUse).toBe(0);
    } finally {
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
      await pair.setApplyDelay(0);
    }
  });

  describe('replica faults (through a fault proxy in front of the standby)', () => {
    let proxy: FaultProxy;
    let proxyPort: number;

    beforeAll(async () => {
      proxy = await startFaultProxy({ port: pair.standby.port });
      proxyPort = proxy.port;
    });

    afterAll(async () => {
      await proxy?.close();
    });

    it('replica down (refusing): sessions fall back to the primary at once; the replica comes back when it answers again', async () => {
      const states: string[] = [];
      const engine = engineOf({ replicaOptions: { checkIntervalMs: 100, checkTimeoutMs: 500, onStateChange: (e) => states.push(e.state) } }, proxy.url(primaryUrl));
      const SessionLocal = sessionmaker(engine);
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
      await proxy.close(); // nothing listens: connections are refused
      // the pooled connection is dead and new ones are refused
      const started = performance.now();
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(false);
      const fallbackMs = performance.now() - started;
      const timings: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(false);
        timings.push(performance.now() - t);
      }
      console.log(`replica down: first read-only session after the fault ${fallbackMs.toFixed(1)} ms, next ones ${timings.map((t) => t.toFixed(1)).join(' / ')} ms (primary fallback)`);
      const replica = engine.stats().pools?.replicas[0];
      expect(replica?.state).toBe('down');
      // stopping the proxy resets the connections it had (the health check's among them) before new ones are refused: either is the cause
      expect(replica?.cause).toMatch(/ECONNREFUSED|refused|ECONNRESET|reset|terminated|health check/i);
      expect(states).toContain('down');
      proxy = await startFaultProxy({ port: pair.standby.port }, { port: proxyPort });
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'up', 3000);
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
    });

    it("replica down with fallback 'error': ReplicaUnavailableError naming the replica (password redacted) and the cause, answered 503 with Retry-After", async () => {
      const engine = engineOf({ replicaOptions: { fallback: 'error', checkIntervalMs: 1000, onStateChange: () => {} } }, proxy.url(primaryUrl));
      const SessionLocal = sessionmaker(engine);
      await proxy.close();
      try {
        const error = await SessionLocal.begin(() => inRecovery(engine), { readOnly: true }).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ReplicaUnavailableError);
        const message = (error as Error).message;
        expect(message).toContain(`127.0.0.1:${proxyPort}`);
        expect(message).not.toContain(':postgres@');
        expect(message).toMatch(/down/);
        expect(httpErrorFor(error)).toMatchObject({ status: 503, headers: { 'retry-after': '1' }, body: { error: 'replica_unavailable' } });
        // read-write sessions are not affected
        expect(await SessionLocal.begin(() => inRecovery(engine))).toBe(false);
      } finally {
        proxy = await startFaultProxy({ port: pair.standby.port }, { port: proxyPort });
      }
    });

    it('frozen replica (accepts, never answers): marked down within the check deadline, the read in flight fails with ReplicaUnavailableError, new reads use the primary', async () => {
      const engine = engineOf({ replicaOptions: { checkIntervalMs: 100, checkTimeoutMs: 400 } }, proxy.url(primaryUrl));
      const SessionLocal = sessionmaker(engine);
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'up', 2000);
      const session = SessionLocal({ readOnly: true });
      await session.run(() => engine.sequelize.query('SELECT 1'));
      proxy.silent();
      const frozenAt = performance.now();
      const inFlight = session.run(() => engine.sequelize.query('SELECT 2')).catch((e: unknown) => e);
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'down', 3000);
      const markedDownMs = performance.now() - frozenAt;
      const error = await inFlight;
      const failedMs = performance.now() - frozenAt;
      expect(error).toBeInstanceOf(ReplicaUnavailableError);
      expect((error as Error).message).toMatch(/no reply to a health check within 400 ms/);
      await session.close();
      const t = performance.now();
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(false);
      console.log(
        `frozen replica: marked down ${markedDownMs.toFixed(0)} ms after freezing (check every 100 ms, deadline 400 ms), in-flight read failed after ${failedMs.toFixed(0)} ms, next read-only session ${(performance.now() - t).toFixed(1)} ms on the primary`,
      );
      expect(engine.stats().pool.inUse).toBe(0);
      proxy.pass();
      proxy.reset();
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'up', 3000);
    });
  });

  it('hostile: a session between statements when its replica is marked down gets ReplicaUnavailableError on its next statement; an aborted request waiting for a replay position gets its abort', async () => {
    const proxy = await startFaultProxy({ port: pair.standby.port });
    try {
      const engine = engineOf({ replicaOptions: { checkIntervalMs: 100, checkTimeoutMs: 300, onStateChange: () => {} } }, proxy.url(primaryUrl));
      const SessionLocal = sessionmaker(engine, { readYourWrites: { maxWaitMs: 2000 } });
      const session = SessionLocal({ readOnly: true });
      expect(await session.run(() => inRecovery(engine))).toBe(true);
      proxy.silent();
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'down', 3000);
      const next = await session.run(() => inRecovery(engine)).catch((e: unknown) => e);
      expect(next).toBeInstanceOf(ReplicaUnavailableError);
      await session.close();
      expect(engine.stats().pool.inUse).toBe(0);
      proxy.pass();
      proxy.reset();
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'up', 3000);
      // a position the standby will not reach soon: the session waits on the replica; the client leaves
      await pair.standby.query('SELECT pg_wal_replay_pause()');
      try {
        const writer = SessionLocal();
        await writer.run(() => engine.sequelize.query("INSERT INTO items VALUES (6001, 'abort')"));
        await writer.commit();
        await writer.close();
        const reader = SessionLocal({ readOnly: true, minLsn: writer.commitLsn });
        const started = performance.now();
        const reading = reader.run(() => inRecovery(engine)).catch((e: unknown) => e);
        setTimeout(() => reader.abort(new Error('client left')), 100);
        const outcome = await reading;
        expect(performance.now() - started).toBeLessThan(1500);
        expect(outcome).toMatchObject({ message: 'client left' });
        await reader.close();
        expect(engine.stats().pool.inUse).toBe(0);
      } finally {
        await pair.standby.query('SELECT pg_wal_replay_resume()');
      }
    } finally {
      await proxy.close();
    }
  });

  it('a read whose replica connection is lost mid-statement (its backend terminated, as a fast shutdown of the standby does) fails with ReplicaUnavailableError (503), not as an internal error', async () => {
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal({ readOnly: true });
    const [row] = (await session.run(() => engine.sequelize.query('SELECT pg_backend_pid() AS pid, pg_is_in_recovery() AS r', { type: QueryTypes.SELECT }))) as Array<{ pid: number; r: boolean }>;
    expect(row?.r).toBe(true);
    const reading = session.run(() => engine.sequelize.query('SELECT pg_sleep(5)')).catch((e: unknown) => e);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await pair.standby.query(`SELECT pg_terminate_backend(${row?.pid})`);
    const error = await reading;
    expect(error).toBeInstanceOf(ReplicaUnavailableError);
    expect(httpErrorFor(error)).toMatchObject({ status: 503, body: { error: 'replica_unavailable' } });
    expect((error as ReplicaUnavailableError).cause).toMatchObject({ parent: { code: '57P01' } });
    await session.close();
    expect(engine.stats().pool.inUse).toBe(0);
    // the replica itself is fine: the next read-only session is served by it
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
  });

  it('a read-only session whose replica connection is lost after its reads, before COMMIT, fails its commit with ReplicaUnavailableError (503), not commit_failed (500)', async () => {
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 0 } });
    const SessionLocal = sessionmaker(engine);
    const session = SessionLocal({ readOnly: true });
    const [row] = (await session.run(() => engine.sequelize.query('SELECT pg_backend_pid() AS pid', { type: QueryTypes.SELECT }))) as Array<{ pid: number }>;
    await pair.standby.query(`SELECT pg_terminate_backend(${row?.pid})`);
    await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 200));
    const error = await session.commit().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplicaUnavailableError);
    expect(httpErrorFor(error)).toMatchObject({ status: 503, body: { error: 'replica_unavailable' } });
    await session.close();
    expect(engine.stats().pool.inUse).toBe(0);
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
  });

  it('lagging replica (replay paused): skipped beyond maxLagMs (reads from the primary), used again once caught up', async () => {
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 100, maxLagMs: 300 } });
    const SessionLocal = sessionmaker(engine);
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
    await pair.standby.query('SELECT pg_wal_replay_pause()');
    try {
      await pair.primary.query("INSERT INTO items VALUES (4000, 'lag')", DB);
      await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'lagging', 5000);
      expect(engine.stats().pools?.replicas[0]?.lagMs).toBeGreaterThanOrEqual(300); // reported in whole ms
      expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(false);
    } finally {
      await pair.standby.query('SELECT pg_wal_replay_resume()');
    }
    await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'up', 5000);
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
  });

  // last: it stops the primary
  it('primary down: reads go on from the standby with a warning that it stopped streaming, until it is maxLagMs stale', async () => {
    const events: Array<{ state: string; streaming?: boolean }> = [];
    const engine = engineOf({ replicaOptions: { checkIntervalMs: 100, maxLagMs: 1000, fallback: 'error', onStateChange: (e) => events.push(e) } });
    const SessionLocal = sessionmaker(engine);
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
    await waitFor(() => engine.stats().pools?.replicas[0]?.streaming === true, 3000);
    await pair.primary.stop('immediate');
    await waitFor(() => engine.stats().pools?.replicas[0]?.streaming === false, 5000);
    expect(events).toContainEqual(expect.objectContaining({ streaming: false }));
    expect(await SessionLocal.begin(() => inRecovery(engine), { readOnly: true })).toBe(true);
    await waitFor(() => engine.stats().pools?.replicas[0]?.state === 'lagging', 5000);
    const error = await SessionLocal.begin(() => inRecovery(engine), { readOnly: true }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReplicaUnavailableError);
    expect((error as ReplicaUnavailableError).replicas[0]).toMatchObject({ state: 'lagging' });
  });
});

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

import fc from 'fast-check';
import { DataTypes, QueryTypes } from 'sequelize';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, ReplicaUnavailableError, sessionmaker, type Engine } from '../src/index.js';
import { freePort, startFaultProxy, startStreamingReplica, streamingReplicaUnsupported, type FaultProxy, type StreamingReplica } from '../src/testing/index.js';
import { elapsed, Engines, everything, replicaStats, served, waitForState } from './hostile-replica-support.js';

/**
 * Hostile second opinion on read-your-writes (semantics rule 15, docs/production.md
 * "Read-your-writes"): every way of writing yields a `commitLsn`, a read-only session given it
 * sees the write, and a forged position costs its own request at most `maxWaitMs`.
 * The standby applies commits 3 s late (`recovery_min_apply_delay`), so a read that is not
 * routed by the position misses the write: each check here can fail.
 */
const unsupported = streamingReplicaUnsupported();
const DELAY_MS = 3_000;
const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

describe.skipIf(unsupported !== undefined)('hostile: read-your-writes', () => {
  let pair: StreamingReplica;
  const proxies: FaultProxy[] = [];
  const engines = new Engines();

  beforeAll(async () => {
    pair = await startStreamingReplica();
    await pair.primary.query('CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)');
    await pair.caughtUp();
    await pair.setApplyDelay(DELAY_MS);
    for (let i = 0; i < 2; i++) proxies.push(await startFaultProxy({ port: pair.standby.port }));
  }, 120_000);
  afterEach(() => engines.disposeAll());
  afterAll(async () => {
    for (const p of proxies) await p.close();
    await pair?.stop();
  });

  async function withReplica(replicas = [pair.standby.url], replicaOptions = {}): Promise<Engine> {
    const engine = engines.make(pair.primary.url, { replicas, replicaOptions: { checkIntervalMs: 200, ...replicaOptions } });
    await engine.ping({ replicas: true });
    for (let i = 0; i < replicas.length; i++) await waitForState(engine, 'up', 15_000, i);
    return engine;
  }

  const names = (engine: Engine, name: string) =>
    engine.sequelize.query<{ name: string }>('SELECT name FROM items WHERE name = $1', { bind: [name], type: QueryTypes.SELECT }).then((rows) => rows.length);

  it('a write commits with its WAL position; a read-only session given it sees the write, one without it does not', async () => {
    const engine = await withReplica();
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    const lsns: Array<string | undefined> = [];
    SessionLocal.on('commit', ({ lsn }) => lsns.push(lsn));

    const writer = SessionLocal();
    await writer.run(() => engine.sequelize.query("INSERT INTO items (name) VALUES ('ryw-basic')"));
    await writer.commit();
    const lsn = writer.commitLsn;
    await writer.close();
    expect(lsn).toMatch(LSN);
    expect(lsns).toEqual([lsn]);

    const [blind, seeing] = await Promise.all([
      SessionLocal.begin(async () => ({ n: await names(engine, 'ryw-basic'), where: await served(engine) }), { readOnly: true }),
      SessionLocal.begin(async () => ({ n: await names(engine, 'ryw-basic'), where: await served(engine) }), { readOnly: true, minLsn: lsn }),
    ]);
    expect(blind).toEqual({ n: 0, where: expect.objectContaining({ standby: true }) }); // the replica is 3 s behind: the check has teeth
    expect(seeing.n).toBe(1);
    expect(seeing.where.standby).toBe(false);

    // once replayed, the position is served by the replica
    await pair.caughtUp(DELAY_MS + 10_000);
    const later = await SessionLocal.begin(async () => ({ n: await names(engine, 'ryw-basic'), where: await served(engine) }), { readOnly: true, minLsn: lsn });
    expect(later).toEqual({ n: 1, where: expect.objectContaining({ standby: true }) });
    // a read-only session and a read-write session that only read commit without a position
    const reader = SessionLocal();
    await reader.run(() => served(engine));
    await reader.commit();
    expect(reader.commitLsn).toBeUndefined();
    await reader.close();
    expect(lsns[0]).toBe(lsn);
    expect(lsns.slice(1)).toEqual(lsns.slice(1).map(() => undefined));
    expect(lsns.length).toBe(5);
  });

  /** Ways to write; `%` is the row's name, `@` the name of a seeded row the statement renames. */
  const WRITES: Array<{ label: string; sql?: string; model?: 'create' | 'update' | 'bulkCreate' | 'upsert' }> = [
    { label: 'INSERT', sql: "INSERT INTO items (name) VALUES ('%')" },
    { label: 'UPDATE', sql: "UPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'comment first', sql: "/* tag */ INSERT INTO items (name) VALUES ('%')" },
    { label: 'line comment first', sql: "-- tag\nUPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'data-modifying CTE', sql: "WITH w AS (INSERT INTO items (name) VALUES ('%') RETURNING id) SELECT id FROM w" },
    { label: 'SELECT; INSERT', sql: "SELECT 1; INSERT INTO items (name) VALUES ('%')" },
    { label: 'SELECT; UPDATE', sql: "SELECT 1; UPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'VALUES; UPDATE', sql: "VALUES (1); UPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'SHOW; UPDATE', sql: "SHOW search_path; UPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'EXPLAIN ANALYZE INSERT', sql: "EXPLAIN ANALYZE INSERT INTO items (name) VALUES ('%')" },
    { label: 'EXPLAIN (ANALYZE) UPDATE', sql: "EXPLAIN (ANALYZE, COSTS OFF) UPDATE items SET name = '%' WHERE name = '@'" },
    { label: 'SELECT ... INTO', sql: "SELECT '%'::text AS name INTO TEMP TABLE t_into; INSERT INTO items (name) SELECT name FROM t_into; DROP TABLE t_into" },
    { label: 'Model.create', model: 'create' },
    { label: 'Model.update', model: 'update' },
    { label: 'Model.bulkCreate', model: 'bulkCreate' },
  ];

  // BREAK (fixed in src/read-your-writes.ts): a write behind a leading SELECT/VALUES/SHOW
  // (`SELECT 1; UPDATE …`) or inside EXPLAIN ANALYZE was taken for a plain read: no commitLsn, so
  // the next read-only session read the stale replica.
  it('every way of writing gives a commitLsn that a read-only session sees the write at (generated)', async () => {
    const engine = await withReplica();
    const Item = engine.sequelize.define('Item', { name: DataTypes.TEXT }, { tableName: 'items', timestamps: false });
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    let n = 0;
    const write = fc.record({
      form: fc.integer({ min: 0, max: WRITES.length - 1 }),
      spaces: fc.constantFrom('', ' ', '\n\t '),
      lower: fc.boolean(),
    });
    const failures: string[] = [];
    const check = async ({ form, spaces, lower }: { form: number; spaces: string; lower: boolean }) => {
      const w = WRITES[form] as (typeof WRITES)[number];
      const name = `ryw-${++n}`;
      const seed = `seed-${n}`;
      await pair.primary.query(`INSERT INTO items (name) VALUES ('${seed}')`);
      const session = SessionLocal();
      await session.run(async () => {
        if (w.sql) {
          let sql = spaces + w.sql.replaceAll('%', name).replaceAll('@', seed);
          if (lower) sql = sql.replace(/\b(INSERT|UPDATE|SELECT|VALUES|SHOW|EXPLAIN|ANALYZE|WITH|INTO|SET|WHERE)\b/g, (k) => k.toLowerCase());
          await engine.sequelize.query(sql);
        } else if (w.model === 'create') await Item.create({ name });
        else if (w.model === 'update') await Item.update({ name }, { where: { name: seed } });
        else await Item.bulkCreate([{ name }]);
      });
      await session.commit();
      const lsn = session.commitLsn;
      await session.close();
      const seen = await SessionLocal.begin(() => names(engine, name), { readOnly: true, ...(lsn !== undefined && { minLsn: lsn }) });
      const ok = lsn !== undefined && seen === 1;
      if (!ok) failures.push(`${w.label}: commitLsn ${lsn}, seen ${seen}`);
      return ok;
    };
    // every form once, then generated spellings of them
    for (let form = 0; form < WRITES.length; form++) await check({ form, spaces: '', lower: false });
    await fc.assert(fc.asyncProperty(write, check), { numRuns: 25, endOnFailure: true }).catch(() => undefined);
    expect([...new Set(failures)]).toEqual([]);
  });

  it('a write committed mid-request (commit(), then reads) keeps its position for the session', async () => {
    const engine = await withReplica();
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    const session = SessionLocal();
    await session.run(() => engine.sequelize.query("INSERT INTO items (name) VALUES ('ryw-mid')"));
    await session.commit();
    const first = session.commitLsn;
    await session.run(() => served(engine));
    await session.commit();
    expect(session.commitLsn).toBe(first);
    await session.close();
    expect(await SessionLocal.begin(() => names(engine, 'ryw-mid'), { readOnly: true, minLsn: session.commitLsn })).toBe(1);
  });

  it('a forged future position costs its session at most maxWaitMs, reads on the primary and leaves the replica up', async () => {
    const maxWaitMs = 1_000;
    const engine = await withReplica();
    const SessionLocal = sessionmaker(engine, { readYourWrites: { maxWaitMs } });
    for (const forged of ['FFFFFFFF/FFFFFFFF', '7FFFFFFF/0', 'ffffffff/1']) {
      const result = await elapsed(() => SessionLocal.begin(() => served(engine), { readOnly: true, minLsn: forged }));
      expect(everything(result.error)).toBe('');
      expect(result.value?.standby).toBe(false);
      expect(result.ms).toBeLessThan(maxWaitMs + 1_000);
    }
    expect(replicaStats(engine).state).toBe('up');
    expect((await SessionLocal.begin(() => served(engine), { readOnly: true })).standby).toBe(true);
    // the oldest position is served by the replica at once
    const zero = await elapsed(() => SessionLocal.begin(() => served(engine), { readOnly: true, minLsn: '0/0' }));
    expect(zero.value?.standby).toBe(true);
  });

  // BREAK (fixed in src/replicas.ts): the wait for the position was maxWaitMs per replica, so a
  // forged token cost count x maxWaitMs (3 s here with 3 replicas and maxWaitMs 1000).
  it('a forged position costs at most maxWaitMs in total, however many replicas there are', async () => {
    const maxWaitMs = 1_000;
    const engine = await withReplica([pair.standby.url, ...proxies.map((p) => p.url(pair.standby.url))]);
    const SessionLocal = sessionmaker(engine, { readYourWrites: { maxWaitMs } });
    const result = await elapsed(() => SessionLocal.begin(() => served(engine), { readOnly: true, minLsn: 'FFFFFFFF/FFFFFFFF' }));
    expect(everything(result.error)).toBe('');
    expect(result.value?.standby).toBe(false);
    expect(result.ms).toBeLessThan(maxWaitMs + 1_000);
    for (let i = 0; i < 3; i++) expect(replicaStats(engine, i).state).toBe('up');
  });

  it('a malformed minLsn is a ConfigError naming minLsn (generated), never sent to a replica', async () => {
    const engine = await withReplica();
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    const valid = /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/;
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('-1/0', '0/-1', '1/2/3', '100000000/0', '0x1/0', ' 0/1', '0/1;DROP', "0/1'", 'G/0', '/', '0/', '/0')), (text) => {
        fc.pre(!valid.test(text));
        let thrown: unknown;
        try {
          SessionLocal({ readOnly: true, minLsn: text });
        } catch (error) {
          thrown = error;
        }
        return thrown instanceof ConfigError && thrown.field === 'minLsn';
      }),
      { numRuns: 200 },
    );
    expect(replicaStats(engine).state).toBe('up');
  });

  it("with fallback 'error' and the only replica down, a read-only session with minLsn never reads stale data", async () => {
    const engine = engines.make(pair.primary.url, {
      replicas: [`postgres://postgres:postgres@127.0.0.1:${await freePort()}/postgres`],
      replicaOptions: { checkIntervalMs: 200, checkTimeoutMs: 500, fallback: 'error' },
    });
    const SessionLocal = sessionmaker(engine, { readYourWrites: true });
    const writer = SessionLocal();
    await writer.run(() => engine.sequelize.query("INSERT INTO items (name) VALUES ('ryw-down')"));
    await writer.commit();
    await writer.close();
    const result = await elapsed(() => SessionLocal.begin(() => names(engine, 'ryw-down'), { readOnly: true, minLsn: writer.commitLsn }));
    if (result.error === undefined) expect(result.value).toBe(1);
    else expect(result.error).toBeInstanceOf(ReplicaUnavailableError);
  });
});

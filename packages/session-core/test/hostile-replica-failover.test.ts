import { QueryTypes } from 'sequelize';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ReplicaUnavailableError, sessionmaker, type Engine } from '../src/index.js';
import { startStreamingReplica, streamingReplicaUnsupported, type StreamingReplica } from '../src/testing/index.js';
import { elapsed, Engines, everything, replicaStats, served, sleep, waitFor, waitForState } from './hostile-replica-support.js';

/**
 * Hostile second opinion on "Lag" when the standby no longer streams (docs/production.md):
 * "when it does not stream (primary down or unreachable), the time since it was last caught up";
 * "When the primary goes down, reads go on from the replicas ... until they are maxLagMs stale".
 * The last test promotes the standby, so it runs last.
 */
const unsupported = streamingReplicaUnsupported();
const CHECK_INTERVAL_MS = 200;
const MAX_LAG_MS = 2_000;
const MARGIN_MS = 3_000;

describe.skipIf(unsupported !== undefined)('hostile: the standby stops streaming', () => {
  let pair: StreamingReplica;
  const engines = new Engines();
  const events: Array<{ state: string; streaming?: boolean }> = [];

  beforeAll(async () => {
    pair = await startStreamingReplica();
    await pair.primary.query('CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL)');
    await pair.caughtUp();
  }, 120_000);
  afterEach(() => engines.disposeAll());
  afterAll(() => pair?.stop());

  async function engine(fallback: 'primary' | 'error'): Promise<Engine> {
    const e = engines.make(pair.primary.url, {
      replicas: [pair.standby.url],
      connectTimeoutMs: 1_000,
      pool: { acquireTimeoutMs: 2_000 },
      replicaOptions: { checkIntervalMs: CHECK_INTERVAL_MS, maxLagMs: MAX_LAG_MS, fallback, onStateChange: (ev) => events.push(ev) },
    });
    await e.ping({ replicas: true });
    await waitForState(e, 'up');
    return e;
  }

  it('primary down: reads go on from the replica, then stop once it is maxLagMs stale; primary back, streaming again', async () => {
    const e = await engine('error');
    const SessionLocal = sessionmaker(e, { readOnly: true });
    await waitFor('streaming', 10_000, () => replicaStats(e).streaming === true);
    const stopped = performance.now();
    await pair.primary.stop('fast');
    try {
      const soon = await elapsed(() => SessionLocal.begin(() => served(e)));
      expect(everything(soon.error)).toBe('');
      expect(soon.value?.standby).toBe(true);
      await waitFor('the replica to report it stopped streaming', 10_000, () => replicaStats(e).streaming === false);
      expect(events.some((ev) => ev.streaming === false)).toBe(true);
      const refusedAt = await waitFor(
        'reads from the stale replica to be refused',
        MAX_LAG_MS + 10 * CHECK_INTERVAL_MS + MARGIN_MS,
        async () => {
          const r = await elapsed(() => SessionLocal.begin(() => served(e)));
          return r.error instanceof ReplicaUnavailableError ? performance.now() : undefined;
        },
        100,
      );
      // lag counts from the last check that saw it caught up (at most one interval before the stop)
      expect(refusedAt - stopped).toBeGreaterThan(MAX_LAG_MS - CHECK_INTERVAL_MS - 200);
      const stale = replicaStats(e);
      expect(stale.state).toBe('lagging');
      expect(stale.lagMs).toBeGreaterThan(MAX_LAG_MS);
    } finally {
      await pair.primary.start();
    }
    await waitFor('streaming again', 20_000, () => replicaStats(e).streaming === true && replicaStats(e).state === 'up');
    expect((await SessionLocal.begin(() => served(e))).standby).toBe(true);
  });

  // BREAK: a promoted standby (it left recovery, so it no longer streams and never will) is taken
  // for "not a standby: lag 0" and stays `up`: read-only sessions keep reading its frozen data
  // however old, while docs/production.md says a replica that does not stream gets staler from
  // when it was last caught up and is skipped beyond maxLagMs. Not a small fix (telling a promoted
  // standby from a replica URL that points at the primary itself needs the timeline or system
  // identifier), so not fixed.
  it.fails('a promoted standby (split brain) is not read from once its data is maxLagMs stale', async () => {
    const e = await engine('primary');
    const SessionLocal = sessionmaker(e, { readOnly: true });
    await pair.standby.query('SELECT pg_promote(true, 30)');
    await pair.primary.query("INSERT INTO items (name) VALUES ('after-promotion')");
    const written = performance.now();
    await sleep(MAX_LAG_MS + 5 * CHECK_INTERVAL_MS + 1_000 - (performance.now() - written));
    const read = await SessionLocal.begin(async () => ({
      where: await served(e),
      n: (await e.sequelize.query<{ n: number }>("SELECT count(*)::int AS n FROM items WHERE name = 'after-promotion'", { type: QueryTypes.SELECT }))[0]?.n,
    }));
    // either the replica is skipped (read on the primary) or it has the write: never a read of frozen data
    expect(read.n).toBe(1);
  });
});

// Connection hold time: from the moment a pooled connection is handed out to the moment it is
// given back (released or destroyed), measured inside the server process with hrtime.

const ACQUIRED = Symbol('bench.acquiredAt');
const CAPACITY = 1 << 18;

/** Hold times of the current cell (a fixed ring: no allocation per request). */
export class HoldRecorder {
  samples = new Float64Array(CAPACITY);
  count = 0;
  sumMs = 0;

  acquired(connection) {
    if (connection && typeof connection === 'object') connection[ACQUIRED] = process.hrtime.bigint();
  }

  released(connection) {
    const at = connection?.[ACQUIRED];
    if (at === undefined) return;
    connection[ACQUIRED] = undefined;
    const ms = Number(process.hrtime.bigint() - at) / 1e6;
    this.samples[this.count % CAPACITY] = ms;
    this.count++;
    this.sumMs += ms;
  }

  /** `{ count, meanMs, p50Ms, p99Ms, maxMs }` since the last reset. */
  snapshot() {
    const n = Math.min(this.count, CAPACITY);
    if (n === 0) return { count: 0, meanMs: null, p50Ms: null, p99Ms: null, maxMs: null };
    const sorted = this.samples.slice(0, n).sort();
    const at = (q) => round(sorted[Math.min(n - 1, Math.floor(q * n))]);
    return { count: this.count, meanMs: round(this.sumMs / this.count), p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(sorted[n - 1]) };
  }

  reset() {
    this.count = 0;
    this.sumMs = 0;
  }
}

const round = (x) => Math.round(x * 1000) / 1000;

/**
 * Sequelize's pool (`sequelize-pool`, behind `connectionManager.pool`): every variant built on
 * Sequelize (manual, cls, sessionlocal) acquires through `pool.acquire` and gives back through
 * `pool.release` or `pool.destroy`.
 */
export function instrumentSequelizePool(sequelize, recorder) {
  const pool = sequelize.connectionManager.pool;
  const { acquire, release, destroy } = pool;
  pool.acquire = async function benchAcquire(...args) {
    const connection = await acquire.apply(this, args);
    recorder.acquired(connection);
    return connection;
  };
  pool.release = function benchRelease(connection) {
    recorder.released(connection);
    return release.call(this, connection);
  };
  pool.destroy = function benchDestroy(connection) {
    recorder.released(connection);
    return destroy.call(this, connection);
  };
}

/** `pg.Pool` (raw-pg, @fastify/postgres): its own `acquire` and `release` events. */
export function instrumentPgPool(pool, recorder) {
  pool.on('acquire', (client) => recorder.acquired(client));
  pool.on('release', (_error, client) => recorder.released(client));
}

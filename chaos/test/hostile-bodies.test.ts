import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { send, until, type HttpResult } from '../src/http.js';
import { APPS, startShop, type ShopProcess } from '../src/shops.js';

let db: TestDatabase;
let admin: pg.Client;
const shops: ShopProcess[] = [];
let itemId = 0;

const TEN_MB = 10 * 1024 * 1024;

/** The hostile bodies, each sent to POST /orders and POST /items of every shop. */
const invalidUtf8 = () => Buffer.concat([Buffer.from(`{"itemId":${itemId},"quantity":1,"name":"`), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from('","priceCents":1,"stock":1}')]);
const BODIES: Array<{ name: string; headers: Record<string, string>; body: () => Buffer }> = [
  {
    name: '10 MB JSON',
    headers: { 'content-type': 'application/json' },
    body: () => Buffer.from(`{"itemId":${itemId},"quantity":1,"name":"pad","priceCents":1,"stock":1,"pad":"${'x'.repeat(TEN_MB)}"}`),
  },
  { name: 'deeply nested JSON array (100k levels)', headers: { 'content-type': 'application/json' }, body: () => Buffer.from(`${'['.repeat(100_000)}${']'.repeat(100_000)}`) },
  { name: 'deeply nested JSON object (20k levels)', headers: { 'content-type': 'application/json' }, body: () => Buffer.from(`${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}`) },
  { name: 'text/plain', headers: { 'content-type': 'text/plain' }, body: () => Buffer.from(`{"itemId":${itemId},"quantity":1}`) },
  { name: 'form-urlencoded', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: () => Buffer.from(`itemId=${itemId}&quantity=1&name=pen&priceCents=1&stock=1`) },
  {
    name: 'multipart/form-data',
    headers: { 'content-type': 'multipart/form-data; boundary=XyZ' },
    body: () => Buffer.from(`--XyZ\r\nContent-Disposition: form-data; name="itemId"\r\n\r\n${itemId}\r\n--XyZ--\r\n`),
  },
  { name: 'no content-type', headers: {}, body: () => Buffer.from(`{"itemId":${itemId},"quantity":1}`) },
  { name: 'invalid JSON', headers: { 'content-type': 'application/json' }, body: () => Buffer.from('{"itemId": 1, "quantity": ') },
];

async function state(shop: ShopProcess): Promise<{ inUse: number; open: number; idleInTx: number }> {
  const stats = (await send({ port: shop.port, path: '/stats', timeoutMs: 5_000 })).body as { pool: { inUse: number }; sessions: { open: number } };
  const idle = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 AND state LIKE 'idle in transaction%'", [
    db.name,
    shop.app,
  ]);
  return { inUse: stats.pool.inUse, open: stats.sessions.open, idleInTx: idle.rows[0]!.n };
}

beforeAll(async () => {
  db = await createTestDatabase('sl_chaos_bodies');
  // one app at a time runs the migrations (they take an advisory lock anyway); 2 cores
  for (const app of APPS) shops.push(await startShop(app, { DATABASE_URL: db.url, DB_POOL_MAX: '3', DB_POOL_ACQUIRE_TIMEOUT_MS: '2000', DB_STATEMENT_TIMEOUT_MS: '1000' }));
  admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  itemId = (await admin.query<{ id: number }>("INSERT INTO items (name, price_cents, stock) VALUES ('hostile', 100, 1000000) RETURNING id")).rows[0]!.id;
}, 180_000);

afterAll(async () => {
  await Promise.all(shops.map((s) => s.stop()));
  await admin?.end();
  await db?.drop();
});

describe.each(APPS)('%s: hostile and bad bodies get 4xx and leave nothing open', (app) => {
  const shop = () => shops.find((s) => s.app === app)!;

  test.each(BODIES.map((b) => [b.name, b] as const))('%s', (_name, hostile) => expectRefused(hostile));

  // Decoded strictly: the shops once read invalid bytes as U+FFFD and accepted the body (201, mangled field).
  test('invalid UTF-8 inside a JSON string', () => expectRefused({ name: 'invalid UTF-8', headers: { 'content-type': 'application/json; charset=utf-8' }, body: invalidUtf8 }));

  async function expectRefused(hostile: (typeof BODIES)[number]): Promise<void> {
    const before = (await admin.query<{ n: number }>('SELECT (SELECT count(*) FROM orders)::int + (SELECT count(*) FROM items)::int AS n')).rows[0]!.n;
    const results: Array<[string, HttpResult]> = [];
    for (const path of ['/orders', '/items']) {
      const res = await send({ port: shop().port, method: 'POST', path, headers: hostile.headers, body: hostile.body(), timeoutMs: 30_000 });
      results.push([path, res]);
    }
    for (const [path, res] of results) {
      // a 10 MB body may be refused before it is read: the server answers 413 and may close the socket
      const status = res.status ?? (res.failure === 'error' && hostile.name.startsWith('10 MB') ? 413 : undefined);
      expect(status, `${app} POST ${path} ${hostile.name}: ${JSON.stringify(res).slice(0, 300)}`).toBeGreaterThanOrEqual(400);
      expect(status, `${app} POST ${path} ${hostile.name}: ${JSON.stringify(res).slice(0, 300)}`).toBeLessThan(500);
    }
    const after = (await admin.query<{ n: number }>('SELECT (SELECT count(*) FROM orders)::int + (SELECT count(*) FROM items)::int AS n')).rows[0]!.n;
    expect(after, 'a hostile body wrote rows').toBe(before);
    const settled = await until(async () => {
      const s = await state(shop());
      return s.inUse === 0 && s.open === 0 && s.idleInTx === 0;
    }, 10_000);
    expect(settled, JSON.stringify(await state(shop()))).toBeDefined();
    expect((await send({ port: shop().port, path: '/health' })).status).toBe(200);
  }

  test('a handler stuck in a statement is cut by DB_STATEMENT_TIMEOUT_MS and its connection comes back', async () => {
    const res = await send({ port: shop().port, path: '/sleep?ms=10000', timeoutMs: 20_000 });
    expect(res.status).toBe(500);
    expect(res.ms).toBeLessThan(9_000);
    const settled = await until(async () => {
      const s = await state(shop());
      return s.inUse === 0 && s.open === 0 && s.idleInTx === 0;
    }, 10_000);
    expect(settled).toBeDefined();
    expect((await send({ port: shop().port, path: '/health' })).status).toBe(200);
  });
});

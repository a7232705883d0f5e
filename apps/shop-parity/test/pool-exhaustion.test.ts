import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshot, sql } from './support/database.js';
import { call, waitFor } from './support/http.js';
import { APPS, startShop, type ShopProcess } from './support/shop-process.js';

// All three apps share one database here, started at the same moment: their migrations race.
describe('pool exhaustion (DB_POOL_MAX=1, DB_POOL_ACQUIRE_TIMEOUT_MS=200)', () => {
  let db: TestDatabase;
  const shops = new Map<string, ShopProcess>();

  beforeAll(async () => {
    db = await createTestDatabase('shop_pool');
    const started = await Promise.all(APPS.map((app) => startShop(app, { DATABASE_URL: db.url, DB_POOL_MAX: '1', DB_POOL_ACQUIRE_TIMEOUT_MS: '200' })));
    for (const shop of started) shops.set(shop.app, shop);
  });
  afterAll(async () => {
    await Promise.all([...shops.values()].map((shop) => shop.stop()));
    await db?.drop();
  });

  it('migrates once when three apps start against the same database at once', async () => {
    const rows = await sql<{ name: string }>(db.url, 'SELECT name FROM shop_migrations ORDER BY name');
    expect(rows.map((r) => r.name)).toEqual(['0001-create-items', '0002-create-orders-and-payments', '0003-payment-matches-order']);
  });

  it.each(APPS)('%s answers 503 database_busy with Retry-After while a /sleep holds the only connection', async (app) => {
    const shop = shops.get(app)!;
    const stats = async () => (await call(shop.url, 'GET', '/stats')).body as { pool: { inUse: number } };
    const item = await call(shop.url, 'POST', '/items', { json: { name: `${app} pool`, priceCents: 100, stock: 5 } });
    expect(item.status).toBe(201);
    const before = await snapshot(db.url, item.body.id);

    const holding = call(shop.url, 'GET', '/sleep?ms=1500');
    expect(await waitFor(async () => (await stats()).pool.inUse === 1, 5_000)).toBe(true);

    const started = Date.now();
    const busy = await call(shop.url, 'GET', '/health');
    expect(Date.now() - started).toBeLessThan(1_400);
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(busy.body).toEqual({ error: 'database_busy', message: expect.any(String) });

    const order = await call(shop.url, 'POST', '/orders', { json: { itemId: item.body.id, quantity: 1 } });
    expect(order.status).toBe(503);
    expect(order.headers.get('retry-after')).toBe('1');
    expect(order.body).toEqual({ error: 'database_busy', message: expect.any(String) });

    expect(await call(shop.url, 'GET', '/ping')).toMatchObject({ status: 200, body: { pong: true } });
    expect(await holding).toMatchObject({ status: 200, body: { slept: 1500 } });
    expect(await call(shop.url, 'GET', '/health')).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await snapshot(db.url, item.body.id)).toEqual(before);
    expect((await stats()).pool.inUse).toBe(0);
  });
});

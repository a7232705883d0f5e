import { createEngine, sessionmaker, CommitError, type Engine } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineModels, migrate, migrations, PAYMENT_ID_PATTERN, Shop, ShopError } from '../src/index.js';

async function count(url: string, sql: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(sql);
    return Number(rows[0]?.n);
  } finally {
    await client.end();
  }
}

describe('migrations', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase('shop_migrate');
  });
  afterAll(() => db?.drop());

  it('apply once when several processes migrate the same database at the same moment', async () => {
    const runs = await Promise.all([migrate(db.url), migrate(db.url), migrate(db.url), migrate(db.url)]);
    const applied = runs.map((names) => names.length).sort();
    expect(applied).toEqual([0, 0, 0, migrations.length]);
    expect(await count(db.url, 'SELECT count(*) AS n FROM shop_migrations')).toBe(migrations.length);
    expect(await migrate(db.url)).toEqual([]);
  });

  it('revert cleanly and apply again', async () => {
    await migrate(db.url);
    expect(await migrate(db.url, { direction: 'down' })).toHaveLength(migrations.length);
    expect(await count(db.url, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name IN ('items','orders','payments')")).toBe(0);
    expect(await migrate(db.url)).toHaveLength(migrations.length);
  });
});

describe('the purchase', () => {
  let db: TestDatabase;
  let engine: Engine;
  let shop: Shop;

  beforeAll(async () => {
    db = await createTestDatabase('shop_domain');
    await migrate(db.url);
    engine = createEngine(db.url, { pool: { max: 5 } });
    const SessionLocal = sessionmaker(engine);
    shop = new Shop({ engine, SessionLocal, models: defineModels(engine.sequelize), faults: true });
  });
  afterAll(async () => {
    await engine?.dispose();
    await db?.drop();
  });

  const inSession = <T>(fn: () => Promise<T>) => shop.SessionLocal.begin(fn);

  it('decrements stock and writes order and payment in one transaction, then records a receipt', async () => {
    const item = await inSession(() => shop.createItem({ name: 'lamp', priceCents: 1250, stock: 3 }));
    const order = await inSession(() => shop.placeOrder({ itemId: item.id, quantity: 2 }));
    expect(order).toMatchObject({ itemId: item.id, quantity: 2, totalCents: 2500, status: 'paid' });
    expect(order.paymentId).toMatch(PAYMENT_ID_PATTERN);
    expect(await inSession(() => shop.getOrder(String(order.id)))).toEqual(order);
    expect((await inSession(() => shop.getItem(String(item.id)))).stock).toBe(1);
    expect(shop.listReceipts().orderIds).toContain(order.id);
  });

  it('refuses to oversell and tells a missing item from a short one', async () => {
    const item = await inSession(() => shop.createItem({ name: 'mug', priceCents: 500, stock: 1 }));
    await expect(inSession(() => shop.placeOrder({ itemId: item.id, quantity: 2 }))).rejects.toMatchObject({ code: 'insufficient_stock', status: 409 });
    await expect(inSession(() => shop.placeOrder({ itemId: 999_999, quantity: 1 }))).rejects.toBeInstanceOf(ShopError);
    expect((await inSession(() => shop.getItem(String(item.id)))).stock).toBe(1);
  });

  it('fails only at COMMIT when the payment does not match the order, leaving nothing behind', async () => {
    const item = await inSession(() => shop.createItem({ name: 'desk', priceCents: 9900, stock: 2 }));
    const before = { orders: await count(db.url, 'SELECT count(*) AS n FROM orders'), receipts: shop.listReceipts().orderIds.length };
    let returned = false;
    const attempt = inSession(async () => {
      const order = await shop.placeOrder({ itemId: item.id, quantity: 1 }, 'commit');
      returned = true;
      return order;
    });
    await expect(attempt).rejects.toBeInstanceOf(CommitError);
    expect(returned).toBe(true);
    expect(await count(db.url, 'SELECT count(*) AS n FROM orders')).toBe(before.orders);
    expect((await inSession(() => shop.getItem(String(item.id)))).stock).toBe(2);
    expect(shop.listReceipts().orderIds).toHaveLength(before.receipts);
  });
});

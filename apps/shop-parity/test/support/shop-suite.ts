import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { PAYMENT_ID_PATTERN } from '@sessionlocal/shop-domain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idleInTransaction, snapshot, sql } from './database.js';
import { call, waitFor, type CallOptions, type Reply } from './http.js';
import { startShop, type AppName, type ShopProcess } from './shop-process.js';

interface Stats {
  pool: { size: number; idle: number; inUse: number; waiting: number };
  sessions: { open: number; opened: number; committed: number; rolledBack: number };
}

const error = (code: string) => ({ error: code, message: expect.any(String) });

/**
 * The shop's HTTP contract (SPEC §4), run against one app started as a real process on a fresh
 * database with SHOP_FAULTS=1. Tests run in order and share the database.
 */
export function shopContractSuite(app: AppName): void {
  describe(`${app}: the shop contract`, () => {
    let db: TestDatabase;
    let shop: ShopProcess;
    const req = (method: string, path: string, options?: CallOptions): Promise<Reply> => call(shop.url, method, path, options);
    const stats = async () => (await req('GET', '/stats')).body as Stats;
    const newItem = async (stock: number, priceCents = 250) => {
      const reply = await req('POST', '/items', { json: { name: `item-${stock}-${priceCents}`, priceCents, stock } });
      expect(reply.status).toBe(201);
      return reply.body as { id: number; name: string; priceCents: number; stock: number };
    };

    beforeAll(async () => {
      db = await createTestDatabase(`shop_${app.replace('-', '_')}`);
      shop = await startShop(app, { DATABASE_URL: db.url, SHOP_FAULTS: '1' });
    });
    afterAll(async () => {
      await shop?.stop();
      await db?.drop();
    });

    it('answers /ping without opening a session or touching the pool', async () => {
      const before = await stats();
      for (let i = 0; i < 5; i++) {
        const reply = await req('GET', '/ping');
        expect(reply.status).toBe(200);
        expect(reply.body).toEqual({ pong: true });
      }
      const after = await stats();
      expect(after.sessions.opened).toBe(before.sessions.opened);
      expect(after.sessions.committed + after.sessions.rolledBack).toBe(before.sessions.committed + before.sessions.rolledBack);
    });

    it('answers /health after a round trip to the database', async () => {
      const before = await stats();
      const reply = await req('GET', '/health');
      expect(reply.status).toBe(200);
      expect(reply.body).toEqual({ status: 'ok' });
      expect((await stats()).sessions.opened).toBe(before.sessions.opened + 1);
    });

    it('reports engine.stats() on /stats', async () => {
      const reply = await req('GET', '/stats');
      expect(reply.status).toBe(200);
      expect(reply.body).toEqual({
        pool: { size: expect.any(Number), idle: expect.any(Number), inUse: 0, waiting: 0 },
        sessions: { open: 0, opened: expect.any(Number), committed: expect.any(Number), rolledBack: expect.any(Number) },
      });
    });

    it('creates, lists and reads items', async () => {
      const created = await req('POST', '/items', { json: { name: 'Fountain pen', priceCents: 1999, stock: 7 } });
      expect(created.status).toBe(201);
      expect(created.headers.get('content-type')).toMatch(/^application\/json/);
      expect(created.body).toEqual({ id: expect.any(Number), name: 'Fountain pen', priceCents: 1999, stock: 7 });
      const second = await newItem(0, 0);
      expect(second.id).toBeGreaterThan(created.body.id);

      const one = await req('GET', `/items/${created.body.id}`);
      expect(one.status).toBe(200);
      expect(one.body).toEqual(created.body);

      const list = await req('GET', '/items');
      expect(list.status).toBe(200);
      const ids = (list.body.items as Array<{ id: number }>).map((item) => item.id);
      expect(ids).toEqual([...ids].sort((a, b) => a - b));
      expect(list.body.items).toEqual(expect.arrayContaining([created.body, second]));
      const [row] = await sql(db.url, 'SELECT name, price_cents, stock FROM items WHERE id = $1', [created.body.id]);
      expect(row).toEqual({ name: 'Fountain pen', price_cents: 1999, stock: 7 });
    });

    it.each([
      ['a missing name', { priceCents: 1, stock: 1 }],
      ['an empty name', { name: '', priceCents: 1, stock: 1 }],
      ['a 201-character name', { name: 'x'.repeat(201), priceCents: 1, stock: 1 }],
      ['a negative price', { name: 'pen', priceCents: -1, stock: 1 }],
      ['a fractional stock', { name: 'pen', priceCents: 1, stock: 0.5 }],
      ['a string stock', { name: 'pen', priceCents: 1, stock: '3' }],
      ['an array body', [{ name: 'pen', priceCents: 1, stock: 1 }]],
    ])('rejects an item with %s: 400 invalid_request, nothing stored', async (_label, body) => {
      const [before] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM items');
      const reply = await req('POST', '/items', { json: body });
      expect(reply.status).toBe(400);
      expect(reply.body).toEqual(error('invalid_request'));
      const [after] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM items');
      expect(after?.n).toBe(before?.n);
    });

    it('rejects malformed JSON and non-JSON bodies with 400 invalid_request', async () => {
      for (const path of ['/items', '/orders']) {
        const malformed = await req('POST', path, { raw: '{"name": "pen",', headers: { 'content-type': 'application/json' } });
        expect(malformed.status, path).toBe(400);
        expect(malformed.body).toEqual(error('invalid_request'));
        const text = await req('POST', path, { raw: 'name=pen', headers: { 'content-type': 'text/plain' } });
        expect(text.status, path).toBe(400);
        expect(text.body).toEqual(error('invalid_request'));
      }
    });

    it('refuses a JSON body with invalid UTF-8 with 400 invalid_request: nothing stored, no session committed, connection released', async () => {
      const item = await newItem(3);
      const before = { stats: await stats(), item: await snapshot(db.url, item.id), items: await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM items') };
      for (const [path, start] of [
        ['/items', '{"name":"'],
        ['/orders', `{"itemId":${item.id},"quantity":1,"name":"`],
      ] as const) {
        // 0xFF 0xFE can never appear in UTF-8; 0xC3 0x28 is a lead byte without its continuation
        const raw = Buffer.concat([Buffer.from(start), Buffer.from([0xff, 0xfe, 0xc3, 0x28]), Buffer.from('","priceCents":1,"stock":1}')]);
        const reply = await req('POST', path, { raw, headers: { 'content-type': 'application/json; charset=utf-8' } });
        expect(reply.status, path).toBe(400);
        expect(reply.body).toEqual({ error: 'invalid_request', message: 'The request body is not valid UTF-8.' });
      }
      expect(await snapshot(db.url, item.id)).toEqual(before.item);
      expect(await sql(db.url, 'SELECT count(*) AS n FROM items')).toEqual(before.items);
      const after = await stats();
      expect(after.sessions.committed).toBe(before.stats.sessions.committed);
      expect(after.sessions.open).toBe(0);
      expect(after.pool.inUse).toBe(0);
      expect(await idleInTransaction(db.url)).toBe(0);
    });

    it('answers 404 not_found for unknown items and 400 for ids that are not positive integers', async () => {
      expect(await req('GET', '/items/999999')).toMatchObject({ status: 404, body: error('not_found') });
      for (const id of ['abc', '0', '-1', '1.5', '1e3', '99999999999']) {
        const reply = await req('GET', `/items/${id}`);
        expect(reply.status, id).toBe(400);
        expect(reply.body).toEqual(error('invalid_request'));
      }
    });

    it('places an order: stock decremented, order and payment rows written, receipt recorded', async () => {
      const item = await newItem(5, 1250);
      const reply = await req('POST', '/orders', { json: { itemId: item.id, quantity: 2 } });
      expect(reply.status).toBe(201);
      expect(reply.body).toEqual({ id: expect.any(Number), itemId: item.id, quantity: 2, totalCents: 2500, status: 'paid', paymentId: expect.stringMatching(PAYMENT_ID_PATTERN) });
      const order = reply.body;

      expect(await req('GET', `/orders/${order.id}`)).toMatchObject({ status: 200, body: order });
      expect((await req('GET', `/items/${item.id}`)).body.stock).toBe(3);
      const [payment] = await sql(db.url, 'SELECT payment_id, amount_cents FROM payments WHERE order_id = $1', [order.id]);
      expect(payment).toEqual({ payment_id: order.paymentId, amount_cents: '2500' });
      expect((await req('GET', '/receipts')).body.orderIds).toContain(order.id);
    });

    it('refuses orders for unknown items, with too little stock, or with bad bodies', async () => {
      const item = await newItem(2);
      expect(await req('POST', '/orders', { json: { itemId: 999999, quantity: 1 } })).toMatchObject({ status: 404, body: error('not_found') });
      expect(await req('POST', '/orders', { json: { itemId: item.id, quantity: 3 } })).toMatchObject({ status: 409, body: error('insufficient_stock') });
      for (const body of [{ itemId: item.id, quantity: 0 }, { itemId: item.id, quantity: 1001 }, { itemId: item.id, quantity: '1' }, { itemId: 0, quantity: 1 }, { quantity: 1 }, null]) {
        const reply = await req('POST', '/orders', { json: body });
        expect(reply.status, JSON.stringify(body)).toBe(400);
        expect(reply.body).toEqual(error('invalid_request'));
      }
      expect(await snapshot(db.url, item.id)).toMatchObject({ stock: 2 });
      expect(await req('GET', '/orders/999999')).toMatchObject({ status: 404, body: error('not_found') });
      expect(await req('GET', '/orders/abc')).toMatchObject({ status: 400, body: error('invalid_request') });
    });

    it.each(['after-stock', 'after-order', 'after-payment', 'commit'])('x-fail-at: %s answers 500 and persists nothing', async (point) => {
      const item = await newItem(4);
      const before = await snapshot(db.url, item.id);
      const receiptsBefore = (await req('GET', '/receipts')).body.orderIds;
      const reply = await req('POST', '/orders', { json: { itemId: item.id, quantity: 1 }, headers: { 'x-fail-at': point } });
      expect(reply.status).toBe(500);
      expect(reply.body).toEqual({ error: point === 'commit' ? 'commit_failed' : 'internal_error', message: expect.any(String) });
      expect(await snapshot(db.url, item.id)).toEqual(before);
      expect((await req('GET', '/receipts')).body.orderIds).toEqual(receiptsBefore);
      expect(await waitFor(async () => (await idleInTransaction(db.url)) === 0, 1_000)).toBe(true);
    });

    it('rejects an unknown x-fail-at point with 400', async () => {
      const item = await newItem(1);
      expect(await req('POST', '/orders', { json: { itemId: item.id, quantity: 1 }, headers: { 'x-fail-at': 'sometime' } })).toMatchObject({ status: 400, body: error('invalid_request') });
    });

    it('never oversells: 50 concurrent orders for 10 in stock give exactly 10 x 201 and 40 x 409', async () => {
      const item = await newItem(10, 300);
      const before = await snapshot(db.url, item.id);
      const replies = await Promise.all(Array.from({ length: 50 }, () => req('POST', '/orders', { json: { itemId: item.id, quantity: 1 }, timeoutMs: 45_000 })));
      const statuses = replies.map((r) => r.status);
      expect(statuses.filter((s) => s === 201)).toHaveLength(10);
      expect(statuses.filter((s) => s === 409)).toHaveLength(40);
      for (const r of replies.filter((r) => r.status === 409)) expect(r.body).toEqual(error('insufficient_stock'));
      const after = await snapshot(db.url, item.id);
      expect(after).toEqual({ orders: before.orders + 10, payments: before.payments + 10, stock: 0 });
      const [perItem] = await sql<{ orders: string; payments: string }>(
        db.url,
        'SELECT count(DISTINCT o.id) AS orders, count(p.id) AS payments FROM orders o JOIN payments p ON p.order_id = o.id WHERE o.item_id = $1',
        [item.id],
      );
      expect(perItem).toEqual({ orders: '10', payments: '10' });
      const orderIds = replies.filter((r) => r.status === 201).map((r) => r.body.id as number);
      expect((await req('GET', '/receipts')).body.orderIds).toEqual(expect.arrayContaining(orderIds));
      expect((await stats()).pool.inUse).toBe(0);
    });

    it('sleeps in the session and validates ms', async () => {
      expect(await req('GET', '/sleep?ms=0')).toMatchObject({ status: 200, body: { slept: 0 } });
      expect(await req('GET', '/sleep?ms=20')).toMatchObject({ status: 200, body: { slept: 20 } });
      for (const query of ['', '?ms=abc', '?ms=-1', '?ms=10001', '?ms=1.5']) {
        const reply = await req('GET', `/sleep${query}`);
        expect(reply.status, query).toBe(400);
        expect(reply.body).toEqual(error('invalid_request'));
      }
    });

    it('rolls back and releases the connection when the client aborts during /sleep', async () => {
      const before = await stats();
      const controller = new AbortController();
      const pending = req('GET', '/sleep?ms=2000', { signal: controller.signal }).catch((e: unknown) => e);
      expect(await waitFor(async () => (await stats()).pool.inUse === 1, 5_000)).toBe(true);
      controller.abort();
      expect(await pending).toBeInstanceOf(Error);
      expect(await waitFor(async () => (await stats()).pool.inUse === 0, 2_000 + 3_000)).toBe(true);
      const after = await stats();
      expect(after.sessions.open).toBe(0);
      expect(after.sessions.rolledBack).toBe(before.sessions.rolledBack + 1);
      expect(after.sessions.committed).toBe(before.sessions.committed);
      expect(await idleInTransaction(db.url)).toBe(0);
      expect(await req('GET', '/health')).toMatchObject({ status: 200 });
    });

    it('answers 404 not_found for unknown routes', async () => {
      expect(await req('GET', '/nope')).toMatchObject({ status: 404, body: error('not_found') });
      expect(await req('DELETE', '/items')).toMatchObject({ status: 404, body: error('not_found') });
    });

    it('lists in /receipts exactly the orders that were committed', async () => {
      const committed = await sql<{ id: number }>(db.url, 'SELECT id FROM orders ORDER BY id');
      expect(committed.length).toBeGreaterThan(10);
      const reply = await req('GET', '/receipts');
      expect(reply.status).toBe(200);
      expect(reply.body).toEqual({ orderIds: committed.map((row) => row.id) });
    });

    it('shuts down on SIGTERM with exit code 0: finishes the request in flight, leaves no connection behind', async () => {
      const inFlight = req('GET', '/sleep?ms=700');
      expect(await waitFor(async () => (await stats()).pool.inUse === 1, 5_000)).toBe(true);
      const started = Date.now();
      const exitCode = shop.stop();
      expect(await inFlight).toMatchObject({ status: 200, body: { slept: 700 } });
      expect(await exitCode).toBe(0);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(shop.output()).toContain('stopped');
      const database = new URL(db.url).pathname.slice(1);
      const [row] = await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [database]);
      expect(Number(row?.n)).toBe(0);
    });
  });
}

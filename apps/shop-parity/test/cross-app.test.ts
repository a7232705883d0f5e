import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import { PAYMENT_ID_PATTERN } from '@sessionlocal/shop-domain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type CallOptions } from './support/http.js';
import { APPS, startShop, type ShopProcess } from './support/shop-process.js';

interface Step {
  request: string;
  status: number;
  contentType: string | null;
  retryAfter: string | null;
  body: unknown;
}

// biome-ignore lint/suspicious/noExplicitAny: response JSON, read field by field by the script
type Send = (method: string, path: string, options?: CallOptions) => Promise<any>;

/** The same requests, in the same order, against each app (each on its own fresh database). */
async function script(send: Send): Promise<void> {
  await send('GET', '/ping');
  await send('GET', '/health');
  const pen = await send('POST', '/items', { json: { name: 'pen', priceCents: 150, stock: 3 } });
  const lamp = await send('POST', '/items', { json: { name: 'lamp', priceCents: 4200, stock: 10 } });
  await send('POST', '/items', { json: { name: '', priceCents: 1, stock: 1 } });
  await send('POST', '/items', { json: { name: 'x'.repeat(201), priceCents: 1, stock: 1 } });
  await send('POST', '/items', { json: { name: 'pen', priceCents: -5, stock: 1 } });
  await send('POST', '/items', { json: { name: 'pen', priceCents: 5, stock: 1.25 } });
  await send('POST', '/items', { json: [1, 2] });
  await send('POST', '/items', { raw: '{"name":', headers: { 'content-type': 'application/json' } });
  await send('POST', '/items', { raw: 'pen', headers: { 'content-type': 'text/plain' } });
  await send('POST', '/items', { raw: '', headers: { 'content-type': 'application/json' } });
  await send('POST', '/items');
  await send('POST', '/items', { json: 'pen' });
  await send('POST', '/items', { json: null });
  await send('POST', '/items', { raw: '{"name":"pen","priceCents":1,"stock":1,"__proto__":{"admin":true}}', headers: { 'content-type': 'application/json' } });
  await send('POST', '/items', { json: { name: 'big', priceCents: 1, stock: 1, padding: 'x'.repeat(1_100_000) } });
  // bytes that are not UTF-8 (a stray 0xFF, an overlong '/', a lone surrogate) are refused, not read as U+FFFD
  for (const bad of [
    [0xff, 0xfe, 0xc3, 0x28],
    [0xc0, 0xaf],
    [0xed, 0xa0, 0x80],
  ]) {
    await send('POST', '/items', { raw: utf8Body('{"name":"', bad, '","priceCents":1,"stock":1}'), headers: { 'content-type': 'application/json; charset=utf-8' } });
  }
  await send('POST', '/items', { raw: utf8Body('{"name":"', [0xff], '","priceCents":1,"stock":1}'), headers: { 'content-type': 'application/json' } });
  await send('POST', '/items', { raw: utf8Body('', [0xef, 0xbb, 0xbf], '{"name":"","priceCents":1,"stock":1}'), headers: { 'content-type': 'application/json' } });
  await send('POST', '/items', { raw: '{"name":"pen","priceCents":1,"stock":1,"constructor":{"prototype":{"admin":true}}}', headers: { 'content-type': 'application/json' } });
  await send('POST', '/items', { json: { name: 'Füller ✒️ 万年筆', priceCents: 990, stock: 1 } });
  await send('GET', '/items');
  await send('GET', '/items/');
  await send('GET', `/items/${pen.id}`);
  await send('GET', '/items/424242');
  await send('GET', '/items/abc');
  await send('GET', '/items/0');
  const order = await send('POST', '/orders', { json: { itemId: pen.id, quantity: 2 } });
  await send('GET', `/orders/${order.id}`);
  await send('POST', '/orders', { json: { itemId: pen.id, quantity: 2 } });
  await send('POST', '/orders', { json: { itemId: 424242, quantity: 1 } });
  await send('POST', '/orders', { json: { itemId: pen.id, quantity: 1001 } });
  await send('POST', '/orders', { json: { itemId: pen.id } });
  await send('POST', '/orders', { raw: '[', headers: { 'content-type': 'application/json' } });
  await send('POST', '/orders', { raw: utf8Body(`{"itemId":${pen.id},"quantity":1,"note":"`, [0xff], '"}'), headers: { 'content-type': 'application/json' } });
  for (const point of ['after-stock', 'after-order', 'after-payment', 'commit', 'bogus']) {
    await send('POST', '/orders', { json: { itemId: lamp.id, quantity: 1 }, headers: { 'x-fail-at': point } });
  }
  await send('GET', `/items/${lamp.id}`);
  await send('POST', '/orders', { json: { itemId: lamp.id, quantity: 10 } });
  await send('GET', `/items/${lamp.id}`);
  await send('GET', '/orders/424242');
  await send('GET', '/orders/-3');
  await send('GET', '/receipts');
  await send('GET', '/sleep?ms=5');
  await send('GET', '/sleep?ms=10001');
  await send('GET', '/sleep');
  await send('GET', '/sleep?ms=1&ms=2');
  await send('GET', '/stats');
  await send('GET', '/no/such/route');
  await send('GET', '/no/such/route?with=query');
  await send('PUT', '/items/1', { json: {} });
}

/** `before`, the raw bytes, then `after`: for bodies that are not valid UTF-8. */
function utf8Body(before: string, bytes: number[], after: string): Uint8Array {
  return Buffer.concat([Buffer.from(before), Buffer.from(bytes), Buffer.from(after)]);
}

/** Values that legitimately differ between runs: random payment ids and pool counters. */
function normalise(path: string, body: unknown): unknown {
  if (path === '/stats') return JSON.parse(JSON.stringify(body, (_key, value: unknown) => (typeof value === 'number' ? '<number>' : value)));
  return JSON.parse(
    JSON.stringify(body, (key, value: unknown) => {
      if (key === 'paymentId' && typeof value === 'string') return PAYMENT_ID_PATTERN.test(value) ? '<paymentId>' : `<bad paymentId ${value}>`;
      return value;
    }),
  );
}

async function record(shop: ShopProcess): Promise<Step[]> {
  const steps: Step[] = [];
  await script(async (method, path, options) => {
    const reply = await call(shop.url, method, path, options);
    steps.push({
      request: `${method} ${path} ${options?.headers?.['x-fail-at'] ?? ''}`.trim(),
      status: reply.status,
      contentType: reply.headers.get('content-type')?.split(';')[0] ?? null,
      retryAfter: reply.headers.get('retry-after'),
      body: normalise(path, reply.body),
    });
    return reply.body;
  });
  return steps;
}

describe('the three apps answer the same script identically', () => {
  const databases: TestDatabase[] = [];
  const shops: ShopProcess[] = [];

  beforeAll(async () => {
    for (const app of APPS) databases.push(await createTestDatabase(`shop_cross_${app.replace('-', '_')}`));
    shops.push(...(await Promise.all(APPS.map((app, i) => startShop(app, { DATABASE_URL: databases[i]!.url, SHOP_FAULTS: '1' })))));
  });
  afterAll(async () => {
    await Promise.all(shops.map((shop) => shop.stop()));
    await Promise.all(databases.map((db) => db.drop()));
  });

  it('gives deep-equal (status, body) sequences', async () => {
    const [express, koa, fastify] = await Promise.all(shops.map(record));
    // sanity: the script exercised successes, every error code and the faults
    const statuses = new Set(express!.map((s) => s.status));
    expect([...statuses].sort()).toEqual([200, 201, 400, 404, 409, 413, 500]);
    expect(express!.every((s) => s.contentType === 'application/json')).toBe(true);
    // the bodies that are not UTF-8 were refused, not accepted with U+FFFD in a stored name
    expect(express!.filter((s) => (s.body as { message?: string }).message === 'The request body is not valid UTF-8.')).toHaveLength(5);
    expect(koa).toEqual(express);
    expect(fastify).toEqual(express);
  });
});

import { createTestDatabase, freePort, type TestDatabase } from '@sessionlocal/session-core/testing';
import { PAYMENT_ID_PATTERN } from '@sessionlocal/shop-domain';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, waitFor, type CallOptions } from './support/http.js';
import { APPS, startShop, type ShopProcess } from './support/shop-process.js';

/** What one request of the script gave, in terms that must be equal across the three apps. */
interface Step {
  request: string;
  status: number;
  /** `x-sessionlocal-lsn` of the response: `<lsn>` when it is a WAL position. */
  lsnHeader: string | null;
  /** `set-cookie` with the WAL position replaced by `<lsn>`. */
  cookie: string | null;
  retryAfter: string | null;
  /** Read-only sessions the replica served during this request (`/stats` `pools.replicas[0].served`). */
  served: number;
  body: unknown;
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;

function normalise(body: unknown): unknown {
  return JSON.parse(JSON.stringify(body, (key, value: unknown) => (key === 'paymentId' && typeof value === 'string' && PAYMENT_ID_PATTERN.test(value) ? '<paymentId>' : value)));
}

// biome-ignore lint/suspicious/noExplicitAny: response JSON, read field by field by the scripts
type Send = (method: string, path: string, options?: CallOptions) => Promise<{ body: any; lsn: string | null }>;

/** Run `requests` against one app, recording each reply and how many reads the replica served for it. */
async function record(shop: ShopProcess, requests: (send: Send) => Promise<void>): Promise<Step[]> {
  const served = async () => ((await call(shop.url, 'GET', '/stats')).body as { pools?: { replicas: Array<{ served: number }> } }).pools?.replicas[0]?.served ?? -1;
  const steps: Step[] = [];
  await requests(async (method, path, options) => {
    const before = await served();
    const reply = await call(shop.url, method, path, options);
    const lsn = reply.headers.get('x-sessionlocal-lsn');
    steps.push({
      request: `${method} ${path}${options?.headers ? ` ${Object.keys(options.headers).join(',')}` : ''}`,
      status: reply.status,
      lsnHeader: lsn === null ? null : LSN.test(lsn) ? '<lsn>' : lsn,
      cookie: reply.headers.get('set-cookie')?.replace(/=([0-9A-F]{1,8}\/[0-9A-F]{1,8});/, '=<lsn>;') ?? null,
      retryAfter: reply.headers.get('retry-after'),
      served: (await served()) - before,
      body: normalise(reply.body),
    });
    return { body: reply.body, lsn };
  });
  return steps;
}

describe('with a read replica (DATABASE_REPLICA_URLS): the three apps read items and orders from it and carry read-your-writes identically', () => {
  const databases: TestDatabase[] = [];
  const shops: ShopProcess[] = [];

  beforeAll(async () => {
    for (const app of APPS) databases.push(await createTestDatabase(`shop_replica_${app.replace('-', '_')}`));
    // the replica URL is the app's own database: a server not in recovery counts as an up replica with no lag,
    // so what goes to the replica pool shows in `served` while every read sees every commit
    shops.push(...(await Promise.all(APPS.map((app, i) => startShop(app, { DATABASE_URL: databases[i]!.url, DATABASE_REPLICA_URLS: databases[i]!.url })))));
  });
  afterAll(async () => {
    await Promise.all(shops.map((shop) => shop.stop()));
    await Promise.all(databases.map((db) => db.drop()));
  });

  it('GET /items/:id and GET /orders/:id run on the replica; commits answer with the LSN cookie and header; reads sending either back see the order', async () => {
    const runs = await Promise.all(
      shops.map((shop) =>
        record(shop, async (send) => {
          const desk = await send('POST', '/items', { json: { name: 'desk', priceCents: 900, stock: 5 } });
          await send('GET', `/items/${desk.body.id}`);
          const order = await send('POST', '/orders', { json: { itemId: desk.body.id, quantity: 2 } });
          await send('GET', `/orders/${order.body.id}`, { headers: { 'x-sessionlocal-lsn': order.lsn ?? '' } });
          await send('GET', `/orders/${order.body.id}`, { headers: { cookie: `sl_lsn=${order.lsn}` } });
          await send('GET', '/orders/999999');
          await send('GET', '/items/abc');
          await send('POST', '/orders', { json: { itemId: desk.body.id, quantity: 10 } });
          await send('GET', '/health');
          await send('GET', '/items');
        }),
      ),
    );
    const [express, koa, fastify] = runs;
    expect(express!.map((s) => [s.request.split(' ')[0], s.status, s.served, s.lsnHeader !== null])).toEqual([
      ['POST', 201, 0, true],
      ['GET', 200, 1, false],
      ['POST', 201, 0, true],
      ['GET', 200, 1, false],
      ['GET', 200, 1, false],
      ['GET', 404, 1, false],
      ['GET', 400, 0, false],
      ['POST', 409, 0, false],
      ['GET', 200, 0, false],
      ['GET', 200, 0, false],
    ]);
    expect(express![0]!.cookie).toBe('sl_lsn=<lsn>; Max-Age=60; Path=/; HttpOnly; SameSite=Lax');
    expect(express![3]!.body).toEqual(express![2]!.body);
    expect(koa).toEqual(express);
    expect(fastify).toEqual(express);
  });
});

describe('with a replica that refuses connections and DB_REPLICA_FALLBACK=error: the three apps answer reads 503 replica_unavailable and keep taking orders', () => {
  const databases: TestDatabase[] = [];
  const shops: ShopProcess[] = [];

  beforeAll(async () => {
    const refused = await freePort(); // nothing listens there
    for (const app of APPS) databases.push(await createTestDatabase(`shop_noreplica_${app.replace('-', '_')}`));
    shops.push(
      ...(await Promise.all(
        APPS.map((app, i) => {
          const replica = new URL(databases[i]!.url);
          replica.port = String(refused);
          return startShop(app, { DATABASE_URL: databases[i]!.url, DATABASE_REPLICA_URLS: replica.toString(), DB_REPLICA_FALLBACK: 'error' });
        }),
      )),
    );
  });
  afterAll(async () => {
    await Promise.all(shops.map((shop) => shop.stop()));
    await Promise.all(databases.map((db) => db.drop()));
  });

  it('identically, with Retry-After; the replica shows as down in /stats', async () => {
    const runs = await Promise.all(
      shops.map((shop) =>
        record(shop, async (send) => {
          const lamp = await send('POST', '/items', { json: { name: 'lamp', priceCents: 300, stock: 5 } });
          await send('GET', `/items/${lamp.body.id}`);
          const order = await send('POST', '/orders', { json: { itemId: lamp.body.id, quantity: 1 } });
          await send('GET', `/orders/${order.body.id}`, { headers: { 'x-sessionlocal-lsn': order.lsn ?? '' } });
          await send('GET', '/health');
        }),
      ),
    );
    const [express, koa, fastify] = runs;
    expect(express!.map((s) => [s.status, s.served])).toEqual([
      [201, 0],
      [503, 0],
      [201, 0],
      // no replica is usable at all: a read-your-writes read fails too with fallback 'error'
      [503, 0],
      [200, 0],
    ]);
    expect(express![1]).toMatchObject({ retryAfter: expect.stringMatching(/^[1-9][0-9]*$/), body: { error: 'replica_unavailable', message: expect.any(String) } });
    expect(koa).toEqual(express);
    expect(fastify).toEqual(express);
    for (const shop of shops) {
      const down = await waitFor(async () => (await call(shop.url, 'GET', '/stats')).body.pools?.replicas[0]?.state === 'down', 5_000);
      expect(down).toBe(true);
    }
  });
});

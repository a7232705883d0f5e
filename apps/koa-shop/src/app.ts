import Router from '@koa/router';
import { sessionLocal } from '@sessionlocal/adapter-koa';
import { BODY_LIMIT_BYTES, isUnexpected, ShopError, toHttpError, type ShopRuntime } from '@sessionlocal/shop-domain';
import Koa, { type Context, type Next } from 'koa';
import { jsonBody } from './json-body.js';

/** The shop over Koa: routes map HTTP to the domain; the adapter owns the session. */
export function createApp({ shop, SessionLocal, replicas }: ShopRuntime): Koa {
  const app = new Koa();
  // With read replicas: the item and order reads run in read-only sessions (a replica), and a
  // client's own writes stay visible to it (read-your-writes token on every commit).
  const reads = replicas ? [sessionLocal.route({ readOnly: () => true })] : [];

  const router = new Router();
  // Opted out: this route has no session at all, so it can never touch the pool.
  router.get('/ping', sessionLocal.route(false), (ctx) => {
    ctx.body = shop.ping();
  });
  router.get('/health', async (ctx) => {
    ctx.body = await shop.health();
  });
  router.post('/items', async (ctx) => {
    const item = await shop.createItem(ctx.request.body);
    ctx.status = 201;
    ctx.body = item;
  });
  router.get('/items', async (ctx) => {
    ctx.body = await shop.listItems();
  });
  router.get('/items/:id', ...reads, async (ctx) => {
    ctx.body = await shop.getItem(ctx.params.id);
  });
  router.post('/orders', async (ctx) => {
    const order = await shop.placeOrder(ctx.request.body, ctx.get('x-fail-at'));
    ctx.status = 201;
    ctx.body = order;
  });
  router.get('/orders/:id', ...reads, async (ctx) => {
    ctx.body = await shop.getOrder(ctx.params.id);
  });
  router.get('/receipts', (ctx) => {
    ctx.body = shop.listReceipts();
  });
  router.get('/sleep', async (ctx) => {
    ctx.body = await shop.sleep(ctx.query.ms);
  });
  router.get('/stats', (ctx) => {
    ctx.body = shop.stats();
  });

  app.use(errors);
  app.use(sessionLocal({ factory: SessionLocal, readYourWrites: replicas }));
  app.use(jsonBody(BODY_LIMIT_BYTES));
  app.use(router.routes());
  app.use((ctx) => {
    throw ShopError.routeNotFound(ctx.method, ctx.path);
  });
  return app;
}

/** Outermost middleware: every error becomes the shop's `{ error, message }` JSON. */
async function errors(ctx: Context, next: Next): Promise<void> {
  try {
    await next();
  } catch (error) {
    if (isUnexpected(error)) console.error(`[koa-shop] ${ctx.method} ${ctx.originalUrl} failed:`, error instanceof Error ? `${error.name}: ${error.message}` : error);
    const { status, headers, body } = toHttpError(error);
    ctx.status = status;
    ctx.set(headers);
    ctx.body = body;
  }
}

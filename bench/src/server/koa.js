// Koa 3 + @koa/router, one app per variant. Routes: GET /ping, GET /items/:id, GET /rls/items/:id, POST /orders.
import { createServer } from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal } from '@sessionlocal/adapter-koa';
import Koa from 'koa';
import { errorResponse, inPgTransaction, parseId, parseOrder, parseTenant, pgUseCases } from './domain.js';
import { listenable, Rollback } from './variants.js';

/** Build the variant's app: `{ server, listen(host) }` (the `node:http` server, not yet listening). */
export async function createKoaServer(variant, layer) {
  const app = new Koa();
  const router = new Router();

  // Errors become JSON responses (outermost, so the transaction middlewares below see the throw).
  app.use(async (ctx, next) => {
    try {
      await next();
    } catch (error) {
      const { status, headers, body } = errorResponse(error);
      ctx.status = status;
      ctx.set(headers);
      ctx.body = body;
    }
  });

  if (variant === 'sequelize-manual') {
    // Hand-written, the Koa way: a transaction per request, commit after the downstream middleware.
    app.use(async (ctx, next) => {
      const t = await layer.sequelize.transaction();
      ctx.state.t = t;
      try {
        await next();
      } catch (error) {
        await t.rollback().catch(() => {});
        throw error;
      }
      if (ctx.status < 400) await t.commit();
      else await t.rollback();
    });
  } else if (variant === 'sequelize-cls') {
    // Legacy: a managed transaction wrapping `next`, found by queries through cls-hooked.
    app.use(async (ctx, next) => {
      layer.ns.bindEmitter(ctx.req);
      layer.ns.bindEmitter(ctx.res);
      try {
        await layer.sequelize.transaction(async () => {
          await next();
          if (ctx.status >= 400) throw new Rollback();
        });
      } catch (error) {
        if (!(error instanceof Rollback)) throw error;
      }
    });
  } else if (layer.SessionLocal) {
    app.use(sessionLocal({ factory: layer.SessionLocal }));
  }
  if (variant !== 'bare') app.use(bodyParser());

  router.get('/ping', (ctx) => {
    ctx.body = { pong: true };
  });

  if (variant === 'raw-pg') {
    router.get('/items/:id', async (ctx) => {
      const id = parseId(ctx.params.id);
      ctx.body = await inPgTransaction(layer.pool, (client) => pgUseCases.getItem(client, id));
    });
    router.get('/rls/items/:id', async (ctx) => {
      const id = parseId(ctx.params.id);
      const tenant = parseTenant(ctx.get('x-tenant-id'));
      ctx.body = await inPgTransaction(layer.pool, (client) => pgUseCases.getTenantItem(client, id, tenant));
    });
    router.post('/orders', async (ctx) => {
      const input = parseOrder(ctx.request.body);
      ctx.body = await inPgTransaction(layer.pool, (client) => pgUseCases.purchase(client, input));
      ctx.status = 201;
    });
  } else if (layer.useCases) {
    const { useCases } = layer;
    const check = layer.requireTransaction;
    router.get('/items/:id', async (ctx) => {
      check?.();
      ctx.body = await useCases.getItem(parseId(ctx.params.id), ctx.state.t);
    });
    if (layer.SessionLocal) {
      // the session carries the tenant: set_config(…, true) goes with its BEGIN
      const tenantSettings = sessionLocal.route({ settings: (ctx) => ({ 'app.tenant_id': parseTenant(ctx.get('x-tenant-id')) }) });
      router.get('/rls/items/:id', tenantSettings, async (ctx) => {
        ctx.body = await useCases.getTenantItem(parseId(ctx.params.id), undefined);
      });
    } else {
      router.get('/rls/items/:id', async (ctx) => {
        check?.();
        ctx.body = await useCases.getTenantItem(parseId(ctx.params.id), parseTenant(ctx.get('x-tenant-id')), ctx.state.t);
      });
    }
    router.post('/orders', async (ctx) => {
      check?.();
      ctx.body = await useCases.purchase(parseOrder(ctx.request.body), ctx.state.t);
      ctx.status = 201;
    });
  }

  app.use(router.routes());
  app.use(router.allowedMethods());
  return listenable(createServer(layer.wrapListener ? layer.wrapListener(app.callback()) : app.callback()));
}

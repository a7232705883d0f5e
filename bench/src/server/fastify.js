// Fastify 5, one app per variant. Routes: GET /ping, GET /items/:id, GET /rls/items/:id, POST /orders.
import fastifyPostgres from '@fastify/postgres';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import Fastify from 'fastify';
import { errorResponse, inPgTransaction, parseId, parseOrder, parseTenant, pgUseCases } from './domain.js';
import { instrumentPgPool } from './hold.js';
import { pgPoolOptions, Rollback } from './variants.js';

/** Build the variant's app: `{ server, listen(host) }` (the `node:http` server, not yet listening). */
export async function createFastifyServer(variant, layer, { url, recorder }) {
  const app = Fastify({ logger: false });

  if (variant === 'sequelize-manual') {
    // Hand-written: a transaction per request in onRequest, passed by hand, ended in onResponse.
    app.decorateRequest('t', null);
    app.addHook('onRequest', async (request, reply) => {
      // 'close' is watched from the start: a client gone while we waited for a connection must not leak it
      let gone = false;
      reply.raw.once('close', () => {
        gone = !reply.raw.writableFinished;
        if (gone && request.t) void request.t.rollback().catch(() => {});
      });
      const t = await layer.sequelize.transaction();
      if (gone) {
        await t.rollback().catch(() => {});
        return;
      }
      request.t = t;
    });
    app.addHook('onResponse', async (request, reply) => {
      const t = request.t;
      if (t) await (reply.statusCode < 400 ? t.commit() : t.rollback()).catch(() => {});
    });
  } else if (variant === 'sequelize-cls') {
    // Legacy: a managed transaction wrapping the rest of the request, found through cls-hooked.
    app.addHook('onRequest', (request, reply, done) => {
      layer.ns.bindEmitter(request.raw);
      layer.ns.bindEmitter(reply.raw);
      // settled by the response: 'finish' commits (status < 400), 'close' without finish rolls back
      const ended = new Promise((resolve, reject) => {
        reply.raw.once('finish', () => (reply.statusCode < 400 ? resolve() : reject(new Rollback())));
        reply.raw.once('close', () => reject(new Rollback()));
      });
      ended.catch(() => {});
      layer.sequelize
        .transaction(() => {
          if (reply.raw.closed) throw new Rollback();
          done();
          return ended;
        })
        .catch((error) => {
          if (!(error instanceof Rollback) && !reply.sent) reply.send(error);
        });
    });
  } else if (layer.SessionLocal) {
    await app.register(fastifySessionLocal, { factory: layer.SessionLocal });
  } else if (variant === 'fastify-postgres') {
    await app.register(fastifyPostgres, pgPoolOptions(url));
  }

  app.setErrorHandler((error, _request, reply) => {
    const { status, headers, body } = errorResponse(error);
    reply.code(status).headers(headers).send(body);
  });

  app.get('/ping', async () => ({ pong: true }));

  if (variant === 'raw-pg') {
    app.get('/items/:id', async (request) => {
      const id = parseId(request.params.id);
      return inPgTransaction(layer.pool, (client) => pgUseCases.getItem(client, id));
    });
    app.get('/rls/items/:id', async (request) => {
      const id = parseId(request.params.id);
      const tenant = parseTenant(request.headers['x-tenant-id']);
      return inPgTransaction(layer.pool, (client) => pgUseCases.getTenantItem(client, id, tenant));
    });
    app.post('/orders', async (request, reply) => {
      const input = parseOrder(request.body);
      reply.code(201);
      return inPgTransaction(layer.pool, (client) => pgUseCases.purchase(client, input));
    });
  } else if (variant === 'fastify-postgres') {
    app.get('/items/:id', { pg: { transact: true } }, async (request) => pgUseCases.getItem(request.pg, parseId(request.params.id)));
    app.get('/rls/items/:id', { pg: { transact: true } }, async (request) => {
      const id = parseId(request.params.id);
      return pgUseCases.getTenantItem(request.pg, id, parseTenant(request.headers['x-tenant-id']));
    });
    app.post('/orders', { pg: { transact: true } }, async (request, reply) => {
      const input = parseOrder(request.body);
      reply.code(201);
      return pgUseCases.purchase(request.pg, input);
    });
  } else if (layer.useCases) {
    const { useCases } = layer;
    const check = layer.requireTransaction;
    app.get('/items/:id', async (request) => {
      check?.();
      return useCases.getItem(parseId(request.params.id), request.t ?? undefined);
    });
    if (layer.SessionLocal) {
      // the session carries the tenant: set_config(…, true) goes with its BEGIN
      const tenantSettings = { settings: (request) => ({ 'app.tenant_id': parseTenant(request.headers['x-tenant-id']) }) };
      app.get('/rls/items/:id', { config: { sessionLocal: tenantSettings } }, async (request) => useCases.getTenantItem(parseId(request.params.id), undefined));
    } else {
      app.get('/rls/items/:id', async (request) => {
        check?.();
        return useCases.getTenantItem(parseId(request.params.id), parseTenant(request.headers['x-tenant-id']), request.t ?? undefined);
      });
    }
    app.post('/orders', async (request, reply) => {
      check?.();
      const result = await useCases.purchase(parseOrder(request.body), request.t ?? undefined);
      reply.code(201);
      return result;
    });
  }

  await app.ready();
  if (variant === 'fastify-postgres') instrumentPgPool(app.pg.pool, recorder);
  return {
    server: app.server,
    async listen(host) {
      await app.listen({ port: 0, host });
      return app.server.address().port;
    },
  };
}

// Express 5, one app per variant. Routes: GET /ping, GET /items/:id, GET /rls/items/:id, POST /orders.
import { createServer } from 'node:http';
import { sessionLocal } from '@sessionlocal/adapter-express';
import express from 'express';
import { errorResponse, inPgTransaction, parseId, parseOrder, parseTenant, pgUseCases } from './domain.js';
import { listenable, Rollback } from './variants.js';

/** Build the variant's app: `{ server, listen(host) }` (the `node:http` server, not yet listening). */
export async function createExpressServer(variant, layer) {
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');

  if (variant === 'sequelize-manual') {
    // Hand-written: a transaction per request, passed by hand, ended when the response finishes.
    app.use(async (req, res, next) => {
      // 'close' is watched from the start: a client gone while we waited for a connection must not leak it
      let gone = false;
      res.once('close', () => {
        gone = !res.writableFinished;
        if (gone && req.t) void req.t.rollback().catch(() => {});
      });
      let t;
      try {
        t = await layer.sequelize.transaction();
      } catch (error) {
        return next(error);
      }
      if (gone) return void t.rollback().catch(() => {});
      req.t = t;
      res.once('finish', () => void (res.statusCode < 400 ? t.commit() : t.rollback()).catch(() => {}));
      next();
    });
  } else if (variant === 'sequelize-cls') {
    // Legacy: a managed transaction wrapping `next`, found by queries through cls-hooked.
    app.use((req, res, next) => {
      layer.ns.bindEmitter(req);
      layer.ns.bindEmitter(res);
      // settled by the response: 'finish' commits (status < 400), 'close' without finish rolls back
      const ended = new Promise((resolve, reject) => {
        res.once('finish', () => (res.statusCode < 400 ? resolve() : reject(new Rollback())));
        res.once('close', () => reject(new Rollback()));
      });
      ended.catch(() => {});
      layer.sequelize
        .transaction(() => {
          if (res.closed) throw new Rollback();
          next();
          return ended;
        })
        .catch((error) => {
          if (!(error instanceof Rollback) && !res.headersSent) next(error);
        });
    });
  } else if (layer.SessionLocal) {
    app.use(sessionLocal({ factory: layer.SessionLocal }));
  }
  if (variant !== 'bare') app.use(express.json());

  app.get('/ping', (_req, res) => {
    res.json({ pong: true });
  });

  if (variant === 'raw-pg') {
    app.get('/items/:id', async (req, res) => {
      const id = parseId(req.params.id);
      res.json(await inPgTransaction(layer.pool, (client) => pgUseCases.getItem(client, id)));
    });
    app.get('/rls/items/:id', async (req, res) => {
      const id = parseId(req.params.id);
      const tenant = parseTenant(req.get('x-tenant-id'));
      res.json(await inPgTransaction(layer.pool, (client) => pgUseCases.getTenantItem(client, id, tenant)));
    });
    app.post('/orders', async (req, res) => {
      const input = parseOrder(req.body);
      res.status(201).json(await inPgTransaction(layer.pool, (client) => pgUseCases.purchase(client, input)));
    });
  } else if (layer.useCases) {
    const { useCases } = layer;
    const check = layer.requireTransaction;
    app.get('/items/:id', async (req, res) => {
      check?.();
      res.json(await useCases.getItem(parseId(req.params.id), req.t));
    });
    if (layer.SessionLocal) {
      // the session carries the tenant: set_config(…, true) goes with its BEGIN
      const tenantSettings = sessionLocal.route({ settings: (req) => ({ 'app.tenant_id': parseTenant(req.get('x-tenant-id')) }) });
      app.get('/rls/items/:id', tenantSettings, async (req, res) => {
        res.json(await useCases.getTenantItem(parseId(req.params.id), undefined));
      });
    } else {
      app.get('/rls/items/:id', async (req, res) => {
        check?.();
        res.json(await useCases.getTenantItem(parseId(req.params.id), parseTenant(req.get('x-tenant-id')), req.t));
      });
    }
    app.post('/orders', async (req, res) => {
      check?.();
      res.status(201).json(await useCases.purchase(parseOrder(req.body), req.t));
    });
  }

  app.use((error, _req, res, next) => {
    if (res.headersSent) return next(error);
    const { status, headers, body } = errorResponse(error);
    res.status(status).set(headers).json(body);
  });
  return listenable(createServer(layer.wrapListener ? layer.wrapListener(app) : app));
}

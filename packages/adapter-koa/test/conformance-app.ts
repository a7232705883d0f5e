import http from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { CALLBACK_JSON, type ConformanceApp, type ConformanceKit } from '@sessionlocal/session-core/conformance';
import Koa from 'koa';
import { sessionLocal } from '../src/index.js';

/** The koa app the conformance suite drives: the adapter first, a JSON body parser, then the scenario routes. */
export async function createApp(kit: ConformanceKit): Promise<ConformanceApp> {
  const app = new Koa();
  app.on('error', (error) => kit.onError(error)); // Koa's own ctx.onerror answers; this only observes
  const router = new Router();
  for (const route of kit.routes) {
    const routeMiddleware = route.session === undefined ? [] : [sessionLocal.route(route.session)];
    router[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, async (ctx) => {
      const result = await route.handler({ db: ctx.db, body: ctx.request.body, headers: ctx.headers, query: ctx.query });
      ctx.status = result.status;
      if (result.headers) ctx.set(result.headers);
      ctx.body = 'stream' in result ? result.stream : (result.body ?? null);
    });
  }
  app.use(sessionLocal(kit.options));
  app.use(bodyParser({ jsonLimit: '1mb' }));
  app.use(async (ctx, next) => {
    if (ctx.get('content-type') === CALLBACK_JSON) {
      const text = await new Promise<string | undefined>((resolve, reject) => kit.readBodyWithCallbacks(ctx.req, (error, body) => (error ? reject(error) : resolve(body))));
      ctx.request.body = text === undefined ? undefined : JSON.parse(text);
    }
    await next();
  });
  app.use(router.routes());
  return kit.listen(http.createServer(app.callback()));
}

import http from 'node:http';
import http2 from 'node:http2';
import { createRequire } from 'node:module';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal } from '@sessionlocal/adapter-koa';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import Koa from 'koa';

const { version } = createRequire(import.meta.url)('koa/package.json');

function reply(ctx, result) {
  if ('responded' in result) return;
  ctx.status = result.status;
  if (result.headers) ctx.set(result.headers);
  ctx.body = 'stream' in result ? result.stream : (result.body ?? null);
}

runConformanceSuite({
  name: `koa ${version}`,
  http2: true,
  async createApp(kit) {
    const app = new Koa();
    app.on('error', (error) => kit.onError(error));
    const router = new Router();
    for (const route of kit.routes) {
      const routeMiddleware = route.session === undefined ? [] : [sessionLocal.route(route.session)];
      router[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, async (ctx) => {
        const result = await route.handler({
          get db() {
            return ctx.db;
          },
          body: ctx.request.body,
          headers: ctx.headers,
          query: ctx.query,
          respond: (r) => reply(ctx, r),
          hijack: () => {
            ctx.respond = false;
            return ctx.res;
          },
          raw: ctx.res,
        });
        reply(ctx, result);
      });
    }
    // the app's error handler, outermost
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        if (typeof error?.answerWith !== 'number') throw error;
        kit.onError(error);
        ctx.status = error.answerWith;
        ctx.body = { handled: true };
      }
    });
    app.use(sessionLocal(kit.options));
    for (const options of kit.registrations) app.use(sessionLocal(options));
    app.use(bodyParser({ jsonLimit: '1mb' }));
    app.use(async (ctx, next) => {
      if (ctx.get('content-type') === CALLBACK_JSON) {
        const text = await new Promise((resolve, reject) => kit.readBodyWithCallbacks(ctx.req, (error, body) => (error ? reject(error) : resolve(body))));
        ctx.request.body = text === undefined ? undefined : JSON.parse(text);
      }
      await next();
    });
    app.use(router.routes());
    return kit.listen(kit.http2 ? http2.createServer(app.callback()) : http.createServer(app.callback()));
  },
});

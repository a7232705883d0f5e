// The conformance suite against Koa 2 (installed as `koa2`), wired as the adapter's own Koa 3 run.
import http from 'node:http';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal } from '@sessionlocal/adapter-koa';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import Koa from 'koa2';
import { describe, expect, it } from 'vitest';
import { loadedVersions, resolvedVersion, runtimeImports } from './loaded.js';

runConformanceSuite({
  name: 'koa 2',
  async createApp(kit) {
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
        (ctx.request as { body?: unknown }).body = text === undefined ? undefined : JSON.parse(text); // @koa/bodyparser types augment Koa 3's, not Koa 2's
      }
      await next();
    });
    app.use(router.routes());
    return kit.listen(http.createServer(app.callback()));
  },
});

describe('the Koa under test', () => {
  it('is Koa 2, and no other Koa was loaded (the adapter imports none at run time)', () => {
    expect(resolvedVersion('koa2')).toMatch(/^2\./);
    expect(runtimeImports('@sessionlocal/adapter-koa')).not.toContain('koa');
    expect(loadedVersions('koa')).toEqual([resolvedVersion('koa2')]);
  });
});

// The conformance suite against Koa 2 (installed as `koa2`), wired as the adapter's own Koa 3 run.
import http from 'node:http';
import http2 from 'node:http2';
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import { sessionLocal } from '@sessionlocal/adapter-koa';
import { CALLBACK_JSON, runConformanceSuite, type HandlerResult } from '@sessionlocal/session-core/conformance';
import Koa from 'koa2';
import { describe, expect, it } from 'vitest';
import { loadedVersions, resolvedVersion, runtimeImports } from './loaded.js';

function reply(ctx: { status: number; set(headers: Record<string, string>): void; body: unknown }, result: HandlerResult): void {
  if ('responded' in result) return;
  ctx.status = result.status;
  if (result.headers) ctx.set(result.headers);
  ctx.body = 'stream' in result ? result.stream : (result.body ?? null);
}

runConformanceSuite({
  name: 'koa 2',
  http2: true,
  async createApp(kit) {
    const app = new Koa();
    app.on('error', (error) => kit.onError(error)); // Koa's own ctx.onerror answers; this only observes
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
    // the app's error handler, outermost: a thrown error it answers was already rolled back inside
    app.use(async (ctx, next) => {
      try {
        await next();
      } catch (error) {
        const answerWith = (error as { answerWith?: number } | null)?.answerWith;
        if (typeof answerWith !== 'number') throw error;
        kit.onError(error);
        ctx.status = answerWith;
        ctx.body = { handled: true };
      }
    });
    app.use(sessionLocal(kit.options));
    for (const options of kit.registrations) app.use(sessionLocal(options));
    app.use(bodyParser({ jsonLimit: '1mb' }));
    app.use(async (ctx, next) => {
      if (ctx.get('content-type') === CALLBACK_JSON) {
        const text = await new Promise<string | undefined>((resolve, reject) => kit.readBodyWithCallbacks(ctx.req, (error, body) => (error ? reject(error) : resolve(body))));
        (ctx.request as { body?: unknown }).body = text === undefined ? undefined : JSON.parse(text); // @koa/bodyparser types augment Koa 3's, not Koa 2's
      }
      await next();
    });
    app.use(router.routes());
    return kit.listen(kit.http2 ? http2.createServer(app.callback()) : http.createServer(app.callback()));
  },
});

describe('the Koa under test', () => {
  it('is Koa 2, and no other Koa was loaded (the adapter imports none at run time)', () => {
    expect(resolvedVersion('koa2')).toMatch(/^2\./);
    expect(runtimeImports('@sessionlocal/adapter-koa')).not.toContain('koa');
    expect(loadedVersions('koa')).toEqual([resolvedVersion('koa2')]);
  });
});

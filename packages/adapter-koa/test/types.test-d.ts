import Router from '@koa/router';
import type { Session, SessionFactory } from '@sessionlocal/session-core';
import Koa, { type Context, type Middleware } from 'koa';
import { describe, expectTypeOf, it } from 'vitest';
import { sessionLocal } from '../src/index.js';

declare const SessionLocal: SessionFactory;

describe('koa types', () => {
  it('types ctx.db as a Session by declaration merging, in app and router middleware', () => {
    const app = new Koa();
    app.use(async (ctx) => {
      expectTypeOf(ctx.db).toEqualTypeOf<Session>();
    });
    const router = new Router();
    router.get('/', sessionLocal.route(false), (ctx) => {
      expectTypeOf(ctx.db).toEqualTypeOf<Session>();
    });
  });

  it('passes the Koa context to settings and readOnly', () => {
    expectTypeOf(sessionLocal({ factory: SessionLocal })).toEqualTypeOf<Middleware>();
    sessionLocal({
      factory: SessionLocal,
      settings: (ctx) => {
        expectTypeOf(ctx).toEqualTypeOf<Context>();
        return { 'app.user_id': ctx.get('x-user-id') };
      },
      readOnly: (ctx) => ctx.method === 'GET',
    });
    // @ts-expect-error factory is required
    sessionLocal({});
    // @ts-expect-error the factory is chosen app-wide
    sessionLocal.route({ factory: SessionLocal });
  });
});

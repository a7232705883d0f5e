import type { Session, SessionFactory } from '@sessionlocal/session-core';
import express, { type Request, type RequestHandler } from 'express';
import { describe, expectTypeOf, it } from 'vitest';
import { sessionLocal, type SessionLocalRouteOptions } from '../src/index.js';

declare const SessionLocal: SessionFactory;

describe('express types', () => {
  it('types req.db as a Session by declaration merging', () => {
    const app = express();
    app.get('/', (req) => {
      expectTypeOf(req.db).toEqualTypeOf<Session>();
    });
  });

  it('passes the Express request to settings and readOnly', () => {
    expectTypeOf(sessionLocal({ factory: SessionLocal })).toEqualTypeOf<RequestHandler>();
    sessionLocal({
      factory: SessionLocal,
      settings: (req) => {
        expectTypeOf(req).toEqualTypeOf<Request>();
        return { 'app.user_id': String(req.headers['x-user-id']) };
      },
      readOnly: (req) => req.method === 'GET',
      commitWhen: (status) => status < 300,
      finish: 'after-response',
    });
    // @ts-expect-error factory is required
    sessionLocal({});
    // @ts-expect-error finish is 'before-response' | 'after-response'
    sessionLocal({ factory: SessionLocal, finish: 'later' });
  });

  it('takes false or partial options per route', () => {
    expectTypeOf(sessionLocal.route(false)).toEqualTypeOf<RequestHandler>();
    expectTypeOf<false>().toMatchTypeOf<SessionLocalRouteOptions>();
    sessionLocal.route({ readOnly: () => true });
    // @ts-expect-error the factory is chosen app-wide
    sessionLocal.route({ factory: SessionLocal });
  });
});

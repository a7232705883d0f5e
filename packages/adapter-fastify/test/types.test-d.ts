import type { Session, SessionFactory } from '@sessionlocal/session-core';
import Fastify, { type FastifyRequest } from 'fastify';
import { describe, expectTypeOf, it } from 'vitest';
import { fastifySessionLocal } from '../src/index.js';

declare const SessionLocal: SessionFactory;

describe('fastify types', () => {
  it('types request.db as a Session by declaration merging', async () => {
    const app = Fastify();
    await app.register(fastifySessionLocal, {
      factory: SessionLocal,
      settings: (request) => {
        expectTypeOf(request).toEqualTypeOf<FastifyRequest>();
        return {};
      },
    });
    app.get('/', async (request) => {
      expectTypeOf(request.db).toEqualTypeOf<Session>();
    });
  });

  it('checks the plugin options and the route config', async () => {
    const app = Fastify();
    // @ts-expect-error factory is required
    await app.register(fastifySessionLocal, {});
    app.get('/ping', { config: { sessionLocal: false } }, async () => ({ pong: true }));
    app.get('/report', { config: { sessionLocal: { readOnly: () => true, finish: 'after-response' } } }, async () => ({}));
    // @ts-expect-error finish is 'before-response' | 'after-response'
    app.get('/bad', { config: { sessionLocal: { finish: 'later' } } }, async () => ({}));
  });
});

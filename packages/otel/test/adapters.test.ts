// Through each adapter: one session span per request that queried, the child of that request's
// span (as @opentelemetry/instrumentation-http makes it, here made by a wrapper around the Node
// request listener), also with 30 requests in flight over a pool of 3.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Router from '@koa/router';
import { context, type Span, trace } from '@opentelemetry/api';
import { sessionLocal as expressSessionLocal } from '@sessionlocal/adapter-express';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { sessionLocal as koaSessionLocal } from '@sessionlocal/adapter-koa';
import { createEngine, type Engine, type SessionFactory, sessionmaker } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase } from '@sessionlocal/session-core/testing';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Instrumentation, instrument } from '../src/index.js';
import { telemetry } from './support.js';

const otel = telemetry();
let db: TestDatabase;
let engine: Engine;
let SessionLocal: SessionFactory;
let instrumentation: Instrumentation;

beforeAll(async () => {
  db = await createTestDatabase();
  engine = createEngine(db.url, { pool: { max: 3 } });
  SessionLocal = sessionmaker(engine);
  instrumentation = instrument(SessionLocal, { tracerProvider: otel.tracerProvider, meterProvider: otel.meterProvider });
});

afterEach(() => otel.reset());

afterAll(async () => {
  instrumentation?.disable();
  await engine?.dispose();
  await db?.drop();
  await otel.shutdown();
});

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A server span per request, active while the framework handles it (what instrumentation-http does). */
function traced(listener: Listener): Listener {
  return (req, res) => {
    const span: Span = otel.tracer.startSpan(`${req.method} ${req.url}`, { attributes: { 'test.request': String(req.headers['x-request']) } });
    res.once('close', () => span.end());
    context.with(trace.setSpan(context.active(), span), () => listener(req, res));
  };
}

async function serve(listener: Listener): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer(traced(listener));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Each framework: POST /work queries (and answers its session id), GET /ping opts out of the session. */
const apps: Record<string, () => Promise<{ url: string; close(): Promise<void> }>> = {
  express: async () => {
    const app = express();
    app.use(expressSessionLocal({ factory: SessionLocal }));
    app.get('/ping', expressSessionLocal.route(false), (_req, res) => void res.json({ pong: true }));
    app.post('/work', async (req, res) => {
      await engine.sequelize.query('SELECT pg_sleep(0.01)');
      res.status(201).json({ sessionId: req.db.id });
    });
    return serve(app);
  },
  koa: async () => {
    const app = new Koa();
    const router = new Router();
    router.get('/ping', koaSessionLocal.route(false), (ctx) => {
      ctx.body = { pong: true };
    });
    router.post('/work', async (ctx) => {
      await engine.sequelize.query('SELECT pg_sleep(0.01)');
      ctx.status = 201;
      ctx.body = { sessionId: ctx.db.id };
    });
    app.use(koaSessionLocal({ factory: SessionLocal }));
    app.use(router.routes());
    return serve(app.callback());
  },
  fastify: async () => {
    let server: http.Server | undefined;
    const app = Fastify({
      serverFactory: (handler) => {
        server = http.createServer(traced(handler));
        return server;
      },
    });
    await app.register(fastifySessionLocal, { factory: SessionLocal });
    app.get('/ping', { config: { sessionLocal: false } }, async () => ({ pong: true }));
    app.post('/work', async (request, reply) => {
      await engine.sequelize.query('SELECT pg_sleep(0.01)');
      return reply.code(201).send({ sessionId: request.db.id });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    return {
      url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`,
      close: async () => {
        server!.closeAllConnections();
        await app.close();
      },
    };
  },
};

describe.each(Object.keys(apps))('%s', (framework) => {
  it('one session span per request that queried, the child of its own request span, under concurrency', async () => {
    const app = await apps[framework]!();
    try {
      const replies = await Promise.all(
        Array.from({ length: 30 }, async (_, i) => {
          const response = await fetch(`${app.url}/work`, { method: 'POST', headers: { 'x-request': String(i) } });
          expect(response.status).toBe(201);
          return { request: String(i), ...((await response.json()) as { sessionId: number }) };
        }),
      );
      const ping = await fetch(`${app.url}/ping`, { headers: { 'x-request': 'ping' } });
      expect(ping.status).toBe(200);
      await new Promise((resolve) => setTimeout(resolve, 50)); // request spans end on 'close'

      const spans = await otel.spans();
      const sessions = spans.filter((span) => span.name === 'sessionlocal.session');
      const requests = new Map(spans.filter((span) => span.attributes['test.request'] !== undefined).map((span) => [span.attributes['test.request'], span]));
      expect(sessions).toHaveLength(30); // none for /ping
      expect(requests.size).toBe(31);
      for (const reply of replies) {
        const session = sessions.find((span) => span.attributes['sessionlocal.session.id'] === reply.sessionId);
        const request = requests.get(reply.request)!;
        expect(session, `no span for the session of request ${reply.request}`).toBeDefined();
        expect(session!.parentSpanContext?.spanId).toBe(request.spanContext().spanId);
        expect(session!.spanContext().traceId).toBe(request.spanContext().traceId);
        expect(session!.attributes['sessionlocal.session.outcome']).toBe('commit');
      }
    } finally {
      await app.close();
    }
  });
});

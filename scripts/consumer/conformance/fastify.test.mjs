import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import Fastify from 'fastify';

const { version } = createRequire(import.meta.url)('fastify/package.json');

runConformanceSuite({
  name: `fastify ${version}`,
  http2: true,
  async createApp(kit) {
    // the log is Fastify's error reporting: errors logged at level error reach kit.onError
    const stream = { write: (line) => void (JSON.parse(line).err && kit.onError(JSON.parse(line).err)) };
    const app = kit.http2 ? Fastify({ http2: true, logger: { level: 'error', stream } }) : Fastify({ logger: { level: 'error', stream } });
    await app.register(fastifySessionLocal, kit.options);
    for (const options of kit.registrations) await app.register(fastifySessionLocal, options);
    app.addHook('preParsing', (request, _reply, payload, done) => {
      if (request.headers['content-type'] !== CALLBACK_JSON) return done(null, payload);
      kit.readBodyWithCallbacks(payload, (error, text) => (error ? done(error) : done(null, Readable.from([Buffer.from(text ?? '')]))));
    });
    app.addContentTypeParser(CALLBACK_JSON, { parseAs: 'string' }, (_request, body, done) => done(null, JSON.parse(body)));
    app.addHook('onError', async (_request, _reply, error) => kit.onError(error));
    app.setErrorHandler((error, _request, reply) => {
      if (typeof error?.answerWith === 'number') return reply.code(error.answerWith).send({ handled: true });
      return reply.send(error);
    });
    for (const route of kit.routes) {
      app.route({
        method: route.method,
        url: route.path,
        ...(route.session !== undefined && { config: { sessionLocal: route.session } }),
        handler: async (request, reply) => {
          const result = await route.handler({
            get db() {
              return request.db;
            },
            body: request.body,
            headers: request.headers,
            query: request.query,
            respond: (r) => {
              reply.code(r.status);
              if (r.headers) reply.headers(r.headers);
              void reply.send(r.body ?? null);
            },
            hijack: () => {
              reply.hijack();
              return reply.raw;
            },
            raw: reply.raw,
          });
          if ('responded' in result) return reply;
          reply.code(result.status);
          if (result.headers) reply.headers(result.headers);
          return reply.send('stream' in result ? result.stream : (result.body ?? null));
        },
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address();
    return {
      url: `http://127.0.0.1:${port}`,
      close: async () => {
        app.server.closeAllConnections?.(); // an HTTP/2 server has none (its sessions close with the app)
        await app.close();
      },
    };
  },
});

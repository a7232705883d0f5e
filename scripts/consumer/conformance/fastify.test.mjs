import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import Fastify from 'fastify';

const { version } = createRequire(import.meta.url)('fastify/package.json');

runConformanceSuite({
  name: `fastify ${version}`,
  async createApp(kit) {
    const app = Fastify({ logger: false });
    await app.register(fastifySessionLocal, kit.options);
    app.addHook('preParsing', (request, _reply, payload, done) => {
      if (request.headers['content-type'] !== CALLBACK_JSON) return done(null, payload);
      kit.readBodyWithCallbacks(payload, (error, text) => (error ? done(error) : done(null, Readable.from([Buffer.from(text ?? '')]))));
    });
    app.addContentTypeParser(CALLBACK_JSON, { parseAs: 'string' }, (_request, body, done) => done(null, JSON.parse(body)));
    app.addHook('onError', async (_request, _reply, error) => kit.onError(error));
    for (const route of kit.routes) {
      app.route({
        method: route.method,
        url: route.path,
        ...(route.session !== undefined && { config: { sessionLocal: route.session } }),
        handler: async (request, reply) => {
          const result = await route.handler({ db: request.db, body: request.body, headers: request.headers, query: request.query });
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
        app.server.closeAllConnections();
        await app.close();
      },
    };
  },
});

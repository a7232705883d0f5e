import { runConformanceSuite } from '@sessionlocal/session-core/conformance';
import Fastify from 'fastify';
import { fastifySessionLocal } from '../src/index.js';

runConformanceSuite({
  name: 'fastify',
  async createApp(kit) {
    const app = Fastify({ logger: false });
    await app.register(fastifySessionLocal, kit.options);
    // observe errors; Fastify's default error handler still answers
    app.addHook('onError', async (_request, _reply, error) => kit.onError(error));
    for (const route of kit.routes) {
      app.route({
        method: route.method,
        url: route.path,
        ...(route.session !== undefined && { config: { sessionLocal: route.session } }),
        handler: async (request, reply) => {
          const result = await route.handler({ db: request.db, body: request.body, headers: request.headers, query: request.query as Record<string, unknown> });
          reply.code(result.status);
          if (result.headers) reply.headers(result.headers);
          return reply.send('stream' in result ? result.stream : (result.body ?? null));
        },
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as { port: number };
    return {
      url: `http://127.0.0.1:${port}`,
      close: async () => {
        app.server.closeAllConnections();
        await app.close();
      },
    };
  },
});

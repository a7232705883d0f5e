import { Readable } from 'node:stream';
import { CALLBACK_JSON, type ConformanceApp, type ConformanceKit } from '@sessionlocal/session-core/conformance';
import Fastify, { type FastifyInstance } from 'fastify';
import { fastifySessionLocal } from '../src/index.js';

/** The fastify app the conformance suite drives (also run by apps/adopting over other Sequelize classes). */
export async function createApp(kit: ConformanceKit): Promise<ConformanceApp> {
  // the log is Fastify's error reporting: errors logged at level error reach kit.onError
  const stream = { write: (line: string) => void (JSON.parse(line).err && kit.onError(JSON.parse(line).err)) };
  // over HTTP/2 the instance's types differ only in the raw request/response; the app is written once
  const app = (kit.http2 ? Fastify({ http2: true, logger: { level: 'error', stream } }) : Fastify({ logger: { level: 'error', stream } })) as unknown as FastifyInstance;
  await app.register(fastifySessionLocal, kit.options);
  for (const options of kit.registrations) await app.register(fastifySessionLocal, options);
  // a body read in a preParsing hook that calls back from stream events (e.g. decryption)
  app.addHook('preParsing', (request, _reply, payload, done) => {
    if (request.headers['content-type'] !== CALLBACK_JSON) return done(null, payload);
    kit.readBodyWithCallbacks(payload, (error, text) => (error ? done(error) : done(null, Readable.from([Buffer.from(text ?? '')]))));
  });
  app.addHook('onError', async (_request, _reply, error) => kit.onError(error));
  app.addContentTypeParser(CALLBACK_JSON, { parseAs: 'string' }, (_request, body, done) => done(null, JSON.parse(body as string)));
  // observe errors; Fastify's default error handler still answers, unless the error asks for a status
  app.setErrorHandler((error, _request, reply) => {
    const answerWith = (error as { answerWith?: number } | null)?.answerWith;
    if (typeof answerWith === 'number') return reply.code(answerWith).send({ handled: true });
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
          query: request.query as Record<string, unknown>,
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
  const { port } = app.server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      (app.server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await app.close();
    },
  };
}

import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import { BODY_LIMIT_BYTES, decodeJsonBody, isUnexpected, ShopError, toHttpError, type ShopRuntime } from '@sessionlocal/shop-domain';
import Fastify, { type FastifyInstance, type FastifyRequest } from 'fastify';

/** The shop over Fastify: routes map HTTP to the domain; the plugin owns the session. */
export async function createApp({ shop, SessionLocal, replicas }: ShopRuntime): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: BODY_LIMIT_BYTES, routerOptions: { ignoreTrailingSlash: true } });
  await app.register(fastifySessionLocal, { factory: SessionLocal, readYourWrites: replicas });
  // With read replicas: the item and order reads run in read-only sessions (a replica), and a
  // client's own writes stay visible to it (read-your-writes token on every commit).
  const reads = { config: { sessionLocal: replicas ? { readOnly: () => true } : undefined } };

  // JSON read as bytes and decoded by the domain: strict UTF-8 (Fastify's parser reads invalid bytes as U+FFFD),
  // prototype keys refused, an empty body is no body. `bodyLimit` still applies (Fastify checks it before parsing).
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, async (_request: FastifyRequest, bytes: Buffer) => decodeJsonBody(bytes));
  // Bodies that are not JSON reach the handlers as `undefined` (the domain answers 400), as in the other apps.
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  app.get('/ping', { config: { sessionLocal: false } }, async () => shop.ping());
  app.get('/health', async () => shop.health());
  app.post('/items', async (request, reply) => reply.code(201).send(await shop.createItem(request.body)));
  app.get('/items', async () => shop.listItems());
  app.get<{ Params: { id: string } }>('/items/:id', reads, async (request) => shop.getItem(request.params.id));
  app.post('/orders', async (request, reply) => reply.code(201).send(await shop.placeOrder(request.body, request.headers['x-fail-at'])));
  app.get<{ Params: { id: string } }>('/orders/:id', reads, async (request) => shop.getOrder(request.params.id));
  app.get('/receipts', async () => shop.listReceipts());
  app.get<{ Querystring: { ms?: string } }>('/sleep', async (request) => shop.sleep(request.query.ms));
  app.get('/stats', async () => shop.stats());

  app.setNotFoundHandler(async (request) => {
    throw ShopError.routeNotFound(request.method, request.url.split('?')[0] ?? '/');
  });
  app.setErrorHandler(async (error, request, reply) => {
    const mapped = bodyError(error) ?? error;
    if (isUnexpected(mapped)) console.error(`[fastify-shop] ${request.method} ${request.url} failed:`, mapped instanceof Error ? `${mapped.name}: ${mapped.message}` : mapped);
    const { status, headers, body } = toHttpError(mapped);
    return reply.code(status).headers(headers).send(body);
  });
  return app;
}

/** Fastify's own body errors, in the shop's terms. */
function bodyError(error: unknown): ShopError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') return ShopError.bodyTooLarge();
  return undefined;
}

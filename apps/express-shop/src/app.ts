import { sessionLocal } from '@sessionlocal/adapter-express';
import { BODY_LIMIT_BYTES, decodeUtf8, isUnexpected, rejectPrototypeKeys, ShopError, toHttpError, type ShopRuntime } from '@sessionlocal/shop-domain';
import express, { type ErrorRequestHandler, type Express, type Request, type Response } from 'express';

/** The shop over Express: routes map HTTP to the domain; the adapter owns the session. */
export function createApp({ shop, SessionLocal, replicas }: ShopRuntime): Express {
  const app = express();
  app.disable('x-powered-by');
  // With read replicas: the item and order reads run in read-only sessions (a replica), and a
  // client's own writes stay visible to it (read-your-writes token on every commit).
  const reads = replicas ? [sessionLocal.route({ readOnly: () => true })] : [];

  app.use(sessionLocal({ factory: SessionLocal, readYourWrites: replicas }));
  // `verify` sees the raw bytes: refuse invalid UTF-8 before body-parser decodes it leniently (U+FFFD).
  app.use(express.json({ limit: BODY_LIMIT_BYTES, strict: false, reviver: rejectPrototypeKeys, verify: strictUtf8 }));

  // Opted out: this route has no session at all, so it can never touch the pool.
  app.get('/ping', sessionLocal.route(false), (_req, res) => {
    res.json(shop.ping());
  });

  app.get('/health', async (_req, res) => {
    res.json(await shop.health());
  });
  app.post('/items', async (req, res) => {
    res.status(201).json(await shop.createItem(jsonBody(req)));
  });
  app.get('/items', async (_req, res) => {
    res.json(await shop.listItems());
  });
  app.get('/items/:id', ...reads, async (req, res) => {
    res.json(await shop.getItem(req.params.id));
  });
  app.post('/orders', async (req, res) => {
    res.status(201).json(await shop.placeOrder(jsonBody(req), req.get('x-fail-at')));
  });
  app.get('/orders/:id', ...reads, async (req, res) => {
    res.json(await shop.getOrder(req.params.id));
  });
  app.get('/receipts', (_req, res) => {
    res.json(shop.listReceipts());
  });
  app.get('/sleep', async (req, res) => {
    res.json(await shop.sleep(req.query.ms));
  });
  app.get('/stats', (_req, res) => {
    res.json(shop.stats());
  });

  app.use((req, _res, next) => {
    next(ShopError.routeNotFound(req.method, req.path));
  });
  app.use(errorHandler);
  return app;
}

/** Only bodies declared (or defaulted) as UTF-8: body-parser decodes a `charset=utf-16` body itself. */
function strictUtf8(_req: unknown, _res: unknown, bytes: Buffer, encoding: string): void {
  if (encoding === 'utf-8') decodeUtf8(bytes);
}

/** express.json() reads an empty body as `{}`; the shop treats it as no body, like the other apps. */
function jsonBody(req: Request): unknown {
  return req.get('content-length') === '0' ? undefined : req.body;
}

const errorHandler: ErrorRequestHandler = (error, req, res, next) => {
  if (res.headersSent) return next(error);
  const mapped = bodyParserError(error) ?? error;
  if (isUnexpected(mapped)) console.error(`[express-shop] ${req.method} ${req.originalUrl} failed:`, describe(mapped));
  send(res, toHttpError(mapped));
};

function send(res: Response, { status, headers, body }: ReturnType<typeof toHttpError>): void {
  res.status(status).set(headers).json(body);
}

/** express.json()'s errors (`type: 'entity.parse.failed'` ...), in the shop's terms. */
function bodyParserError(error: unknown): ShopError | undefined {
  const type = (error as { type?: unknown } | null)?.type;
  if (type === 'entity.parse.failed') return ShopError.malformedJson();
  // what `strictUtf8` threw, re-thrown by body-parser as a 403 `entity.verify.failed`
  if (type === 'entity.verify.failed') return ShopError.invalidUtf8();
  if (type === 'entity.too.large') return ShopError.bodyTooLarge();
  return undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

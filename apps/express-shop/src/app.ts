import { sessionLocal } from '@sessionlocal/adapter-express';
import { isUnexpected, ShopError, toHttpError, type ShopRuntime } from '@sessionlocal/shop-domain';
import express, { type ErrorRequestHandler, type Express, type Response } from 'express';

/** The shop over Express: routes map HTTP to the domain; the adapter owns the session. */
export function createApp({ shop, SessionLocal }: ShopRuntime): Express {
  const app = express();
  app.disable('x-powered-by');

  // Mounted before the adapter: this route never has a session, so it never touches the pool.
  app.get('/ping', (_req, res) => {
    res.json(shop.ping());
  });

  app.use(express.json());
  app.use(sessionLocal({ factory: SessionLocal }));

  app.get('/health', async (_req, res) => {
    res.json(await shop.health());
  });
  app.post('/items', async (req, res) => {
    res.status(201).json(await shop.createItem(req.body));
  });
  app.get('/items', async (_req, res) => {
    res.json(await shop.listItems());
  });
  app.get('/items/:id', async (req, res) => {
    res.json(await shop.getItem(req.params.id));
  });
  app.post('/orders', async (req, res) => {
    res.status(201).json(await shop.placeOrder(req.body, req.get('x-fail-at')));
  });
  app.get('/orders/:id', async (req, res) => {
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

const errorHandler: ErrorRequestHandler = (error, req, res, next) => {
  if (res.headersSent) return next(error);
  const mapped = isBodyParserError(error) ? ShopError.malformedJson() : error;
  if (isUnexpected(mapped)) console.error(`[express-shop] ${req.method} ${req.originalUrl} failed:`, describe(mapped));
  send(res, toHttpError(mapped));
};

function send(res: Response, { status, headers, body }: ReturnType<typeof toHttpError>): void {
  res.status(status).set(headers).json(body);
}

/** express.json() rejects unparsable bodies with `type: 'entity.parse.failed'`. */
function isBodyParserError(error: unknown): boolean {
  return (error as { type?: unknown } | null)?.type === 'entity.parse.failed';
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

import http from 'node:http';
import express, { type Response } from 'express';
import { CALLBACK_JSON, type HandlerResult, type ConformanceApp, type ConformanceKit } from '@sessionlocal/session-core/conformance';
import { sessionLocal } from '../src/index.js';

function reply(res: Response, result: HandlerResult): void {
  res.status(result.status);
  if (result.headers) res.set(result.headers);
  if ('stream' in result) result.stream.pipe(res);
  else res.json(result.body ?? null);
}

/** The express app the conformance suite drives: the adapter first, a JSON body parser, then the scenario routes. */
export async function createApp(kit: ConformanceKit): Promise<ConformanceApp> {
  const app = express();
  // the adapter goes first: the session must survive express.json() (it continues from stream events)
  app.use(sessionLocal(kit.options));
  app.use(express.json({ limit: '1mb' }));
  app.use((req, _res, next) => {
    if (req.headers['content-type'] !== CALLBACK_JSON) return next();
    kit.readBodyWithCallbacks(req, (error, text) => {
      req.body = text === undefined ? undefined : JSON.parse(text);
      next(error);
    });
  });
  for (const route of kit.routes) {
    const routeMiddleware = route.session === undefined ? [] : [sessionLocal.route(route.session)];
    app[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, async (req, res) => {
      reply(res, await route.handler({ db: req.db, body: req.body, headers: req.headers, query: req.query as Record<string, unknown> }));
    });
  }
  app.use((error: unknown, _req: express.Request, _res: express.Response, next: express.NextFunction) => {
    kit.onError(error);
    next(error);
  });
  return kit.listen(http.createServer(app));
}

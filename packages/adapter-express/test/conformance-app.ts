import http from 'node:http';
import http2 from 'node:http2';
import express, { type Response } from 'express';
import { CALLBACK_JSON, type ConformanceApp, type ConformanceKit, type HandlerResult } from '@sessionlocal/session-core/conformance';
import { sessionLocal } from '../src/index.js';

function reply(res: Response, result: HandlerResult): void {
  if ('responded' in result) return;
  res.status(result.status);
  if (result.headers) res.set(result.headers);
  if ('stream' in result) result.stream.pipe(res);
  else res.json(result.body ?? null);
}

/** The express app the conformance suite drives (also run by apps/adopting over other Sequelize classes). */
export async function createApp(kit: ConformanceKit): Promise<ConformanceApp> {
  const app = express();
  (app as unknown as NodeJS.EventEmitter).on('error', (error: unknown) => kit.onError(error)); // where the adapter reports a failed COMMIT
  // the adapter goes first: the session must survive express.json() (it continues from stream events)
  app.use(sessionLocal(kit.options));
  for (const options of kit.registrations) app.use(sessionLocal(options));
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
      const result = await route.handler({
        get db() {
          return req.db;
        },
        body: req.body,
        headers: req.headers,
        query: req.query as Record<string, unknown>,
        respond: (r) => reply(res, r),
        hijack: () => res,
        raw: res,
      });
      reply(res, result);
    });
  }
  // a thrown error rolls back whatever the error handlers below answer
  app.use(sessionLocal.errors());
  app.use((error: unknown, _req: express.Request, res: express.Response, next: express.NextFunction) => {
    kit.onError(error);
    const answerWith = (error as { answerWith?: number } | null)?.answerWith;
    if (typeof answerWith === 'number' && !res.headersSent) res.status(answerWith).json({ handled: true });
    else next(error);
  });
  // Express 5 over Node's HTTP/2 compatibility API (its req/res are HTTP/1 prototypes): see conformance.test.ts
  return kit.listen(kit.http2 ? http2.createServer(app as unknown as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void) : http.createServer(app));
}

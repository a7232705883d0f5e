// The conformance suite against Express 4 (installed as `express4`). Express 4 ignores the promise
// an async handler returns (a rejection would be unhandled and end the process), so every handler
// here is next(err)-style: the promise's rejection is passed to `next`.
import http from 'node:http';
import { CALLBACK_JSON, runConformanceSuite, type HandlerResult } from '@sessionlocal/session-core/conformance';
import { sessionLocal } from '@sessionlocal/adapter-express';
import express, { type NextFunction, type Request, type Response } from 'express4';
import { describe, expect, it } from 'vitest';
import { loadedVersions, resolvedVersion, runtimeImports } from './loaded.js';

function reply(res: Response, result: HandlerResult): void {
  if ('responded' in result) return;
  res.status(result.status);
  if (result.headers) res.set(result.headers);
  if ('stream' in result) result.stream.pipe(res);
  else res.json(result.body ?? null);
}

runConformanceSuite({
  name: 'express 4',
  http2: 'Express 4 does not run over http2.createServer (its req/res are HTTP/1 prototypes)',
  async createApp(kit) {
    const app = express();
    (app as unknown as NodeJS.EventEmitter).on('error', (error: unknown) => kit.onError(error)); // where the adapter reports a failed COMMIT
    // casts: in this workspace the adapter's declarations see @types/express 5 (its own devDependency);
    // an Express 4 app's single @types/express 4 has no such mismatch
    app.use(sessionLocal(kit.options) as unknown as express.RequestHandler);
    for (const options of kit.registrations) app.use(sessionLocal(options) as unknown as express.RequestHandler);
    app.use(express.json({ limit: '1mb' }));
    app.use((req: Request, _res: Response, next: NextFunction) => {
      if (req.headers['content-type'] !== CALLBACK_JSON) return next();
      kit.readBodyWithCallbacks(req, (error, text) => {
        req.body = text === undefined ? undefined : JSON.parse(text);
        next(error);
      });
    });
    for (const route of kit.routes) {
      const routeMiddleware = (route.session === undefined ? [] : [sessionLocal.route(route.session)]) as unknown as express.RequestHandler[];
      app[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, (req: Request, res: Response, next: NextFunction) => {
        route
          .handler({
            get db() {
              return req.db;
            },
            body: req.body,
            headers: req.headers,
            query: req.query as Record<string, unknown>,
            respond: (r) => reply(res, r),
            hijack: () => res,
            raw: res,
          })
          .then((result) => reply(res, result), next);
      });
    }
    // a thrown error rolls back whatever the error handlers below answer
    app.use(sessionLocal.errors() as unknown as express.ErrorRequestHandler);
    app.use((error: unknown, _req: Request, res: Response, next: NextFunction) => {
      kit.onError(error);
      const answerWith = (error as { answerWith?: number } | null)?.answerWith;
      if (typeof answerWith === 'number' && !res.headersSent) res.status(answerWith).json({ handled: true });
      else next(error);
    });
    return kit.listen(http.createServer(app));
  },
});

describe('the Express under test', () => {
  it('is Express 4, and no other Express was loaded (the adapter imports none at run time)', () => {
    expect(resolvedVersion('express4')).toMatch(/^4\./);
    expect(runtimeImports('@sessionlocal/adapter-express')).not.toContain('express');
    expect(loadedVersions('express')).toEqual([resolvedVersion('express4')]);
  });
});

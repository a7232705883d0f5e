// Express 4 and 5 alike: handlers pass a rejection to next(err) (Express 4 ignores the promise).
import http from 'node:http';
import { createRequire } from 'node:module';
import { sessionLocal } from '@sessionlocal/adapter-express';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import express from 'express';

const { version } = createRequire(import.meta.url)('express/package.json');

function reply(res, result) {
  if ('responded' in result) return;
  res.status(result.status);
  if (result.headers) res.set(result.headers);
  if ('stream' in result) result.stream.pipe(res);
  else res.json(result.body ?? null);
}

runConformanceSuite({
  name: `express ${version}`,
  http2: 'Express does not run over http2.createServer (its req/res are HTTP/1 prototypes)',
  async createApp(kit) {
    const app = express();
    app.on('error', (error) => kit.onError(error)); // where the adapter reports a failed COMMIT
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
      app[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, (req, res, next) => {
        const ctx = {
          get db() {
            return req.db;
          },
          body: req.body,
          headers: req.headers,
          query: req.query,
          respond: (r) => reply(res, r),
          hijack: () => res,
          raw: res,
        };
        route.handler(ctx).then((result) => reply(res, result), next);
      });
    }
    app.use(sessionLocal.errors());
    app.use((error, _req, res, next) => {
      kit.onError(error);
      if (typeof error?.answerWith === 'number' && !res.headersSent) res.status(error.answerWith).json({ handled: true });
      else next(error);
    });
    return kit.listen(http.createServer(app));
  },
});

// Express 4 and 5 alike: handlers pass a rejection to next(err) (Express 4 ignores the promise).
import http from 'node:http';
import { createRequire } from 'node:module';
import { sessionLocal } from '@sessionlocal/adapter-express';
import { CALLBACK_JSON, runConformanceSuite } from '@sessionlocal/session-core/conformance';
import express from 'express';

const { version } = createRequire(import.meta.url)('express/package.json');

function reply(res, result) {
  res.status(result.status);
  if (result.headers) res.set(result.headers);
  if ('stream' in result) result.stream.pipe(res);
  else res.json(result.body ?? null);
}

runConformanceSuite({
  name: `express ${version}`,
  async createApp(kit) {
    const app = express();
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
      app[route.method === 'GET' ? 'get' : 'post'](route.path, ...routeMiddleware, (req, res, next) => {
        route.handler({ db: req.db, body: req.body, headers: req.headers, query: req.query }).then((result) => reply(res, result), next);
      });
    }
    app.use((error, _req, _res, next) => {
      kit.onError(error);
      next(error);
    });
    return kit.listen(http.createServer(app));
  },
});

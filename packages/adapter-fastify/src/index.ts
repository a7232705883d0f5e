import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ConfigError, type Session } from '@sessionlocal/session-core';
import {
  applyResponseHeaders,
  beforeCall,
  checkRequestSessionOptions,
  joinRequestGroup,
  openRequestScope,
  renderHttpError,
  reportCommitFailure,
  requestProperty,
  responseHolder,
  routeOptionsResolver,
  type RequestResult,
  type RequestScope,
  type RequestSessionOptions,
  type RouteSessionOptions,
} from '@sessionlocal/session-core/adapter';

declare module 'fastify' {
  interface FastifyRequest {
    /** The request's database session (reading it on a route with `config: { sessionLocal: false }` throws `NoActiveSessionError`). */
    db: Session;
  }
  interface FastifyContextConfig {
    /** Per-route session options: `false` opts the route out; an object changes the plugin options. */
    sessionLocal?: RouteSessionOptions<FastifyRequest>;
  }
}

/** Options of `fastifySessionLocal`; `settings(request)` and `readOnly(request)` get the Fastify request. */
export type FastifySessionLocalOptions = RequestSessionOptions<FastifyRequest>;
/** Route `config.sessionLocal`: `false` opts a route out; an object changes `commitWhen`, `finish`, `settings`, `readOnly`. */
export type FastifySessionLocalRouteOptions = RouteSessionOptions<FastifyRequest>;

const plugin: FastifyPluginCallback<FastifySessionLocalOptions> = (fastify: FastifyInstance, options, done) => {
  const name = options?.name ?? 'db';
  try {
    checkRequestSessionOptions(options);
    if (fastify.hasRequestDecorator(name)) throw new ConfigError('name', `request.${name} is already registered: give this registration (another engine) its own name, e.g. { name: 'reportsDb' }`);
  } catch (error) {
    return done(error as Error);
  }
  fastify.decorateRequest(name, null);
  // the registration's scope on the request, the hijack hook on the reply: declared, so both keep one shape
  const SCOPE = Symbol(`sessionlocal.${name}`);
  fastify.decorateRequest(SCOPE as unknown as string, null);
  const HIJACK = beforeCall.key('hijack') as unknown as string;
  if (!fastify.hasReplyDecorator(HIJACK)) fastify.decorateReply(HIJACK, null);
  const scopeOf = (request: FastifyRequest) => (request as unknown as Record<symbol, RequestScope | null>)[SCOPE] ?? undefined;
  const hold = responseHolder();
  const routes = routeOptionsResolver(options);
  const reportTo = (request: FastifyRequest) => (result: RequestResult) => reportCommitFailure(options, request, result, (err) => request.log.error({ err }, 'sessionlocal: COMMIT failed'));
  // only a hijacked reply writes the raw response itself: hold it then, not on every request
  const onHijack = (reply: FastifyReply) => hold(reply.raw, () => scopeOf(reply.request), reportTo(reply.request));
  fastify.addHook('onRoute', (route) => routes.check((route.config as { sessionLocal?: FastifySessionLocalRouteOptions } | undefined)?.sessionLocal));
  fastify.addHook('onRequest', (request, reply, next) => {
    const resolved = routes.resolve(request.routeOptions.config);
    const scope = resolved === false ? undefined : openRequestScope(resolved, request);
    requestProperty(request, name, scope?.session);
    if (!scope) return next();
    (request as unknown as Record<symbol, RequestScope>)[SCOPE] = scope;
    joinRequestGroup(request, scope); // several registrations end together, in registration order
    beforeCall(reply, 'hijack', onHijack);
    scope.watch(reply.raw);
    scope.run(next);
  });
  // The content-type parser continues from the request stream's events: re-enter after it (a request without a body never left the scope).
  fastify.addHook('preValidation', (request, _reply, next) => {
    const parsed = request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined;
    return parsed && scopeOf(request) ? scopeOf(request)!.run(next) : next();
  });
  // The handler (or a hook) failed: roll back whatever status the error handler chooses.
  fastify.addHook('onError', (request, _reply, error, next) => {
    scopeOf(request)?.fail(error);
    next();
  });
  // Commit before the status line; on a failed COMMIT send the error response instead.
  fastify.addHook('onSend', (request, reply, payload, next) => {
    const scope = scopeOf(request);
    if (!scope) return next(null, payload);
    // the handler threw after it answered: its error was reported; the first answer (and its status) stands
    if (scope.answered !== undefined) return void reply.code(scope.answered).hijack();
    scope.answered = reply.statusCode;
    if (scope.finish === 'after-response' || scope.endIfUntouched()) return next(null, payload);
    // as the handler gave it: a late error's handler may change status and type meanwhile
    const [status, type] = [reply.statusCode, reply.getHeader('content-type')];
    scope.end({ status }).then((result) => {
      if (!result.response) {
        if (reply.statusCode !== status) reply.code(status).header('content-type', type);
        // Fastify writes its own headers over the raw response's: the read-your-writes token goes through the reply
        if (result.headers) applyResponseHeaders(result.headers, reply);
        return next(null, payload);
      }
      reportTo(request)(result);
      (payload as { destroy?: () => void } | null)?.destroy?.();
      const rendered = renderHttpError(result.response);
      scope.answered = rendered.status;
      for (const header of Object.keys(reply.getHeaders())) reply.removeHeader(header);
      reply.code(rendered.status).headers(rendered.headers);
      next(null, rendered.body);
    }, next);
  });
  done();
};

/**
 * Fastify plugin: one lazily opened database session per request as `request.db`, committed in
 * `onSend` (before the status line) when the status passes `commitWhen`, rolled back otherwise,
 * always closed. Per route: `config: { sessionLocal: false | { ...options } }`. Register it once
 * per engine, each with its own `name`.
 * @example
 * await app.register(fastifySessionLocal, { factory: SessionLocal });
 * app.post('/items', async (request, reply) => reply.code(201).send(await Item.create(request.body)));
 * app.get('/ping', { config: { sessionLocal: false } }, async () => ({ pong: true }));
 */
export const fastifySessionLocal = fp(plugin, { fastify: '5.x', name: '@sessionlocal/adapter-fastify' });

export default fastifySessionLocal;

import type { FastifyInstance, FastifyPluginCallback, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { ConfigError, type Session } from '@sessionlocal/session-core';
import {
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
  const scopes = new WeakMap<FastifyRequest, RequestScope>();
  const sending = new WeakMap<FastifyRequest, number>(); // response decided (first onSend), its status: a late error must not answer again
  const hold = responseHolder();
  const report = (request: FastifyRequest) => (error: unknown) => request.log.error({ err: error }, 'sessionlocal: COMMIT failed');
  const routes = routeOptionsResolver(options);
  fastify.addHook('onRoute', (route) => routes.check((route.config as { sessionLocal?: FastifySessionLocalRouteOptions } | undefined)?.sessionLocal));
  fastify.addHook('onRequest', (request, reply, next) => {
    const resolved = routes.resolve(request.routeOptions.config);
    const scope = resolved === false ? undefined : openRequestScope(resolved, request);
    requestProperty(request, name, scope?.session);
    if (!scope) return next();
    scopes.set(request, scope);
    joinRequestGroup(request, scope); // several registrations end together, in registration order
    // only a hijacked reply writes the raw response itself: hold it then, not on every request
    const onResult = (result: RequestResult) => reportCommitFailure(options, request, result, report(request));
    beforeCall(reply, 'hijack', () => hold(reply.raw, () => scope, onResult));
    scope.watch(reply.raw);
    scope.run(next);
  });
  // The content-type parser continues from the request stream's events: re-enter after it (a request without a body never left the scope).
  fastify.addHook('preValidation', (request, _reply, next) => {
    const parsed = request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined;
    const scope = parsed ? scopes.get(request) : undefined;
    if (scope) scope.run(next);
    else next();
  });

  // The handler (or a hook) failed: roll back whatever status the error handler chooses.
  fastify.addHook('onError', (request, _reply, error, next) => {
    scopes.get(request)?.fail(error);
    next();
  });

  // Commit before the status line; on a failed COMMIT send the error response instead.
  fastify.addHook('onSend', (request, reply, payload, next) => {
    const scope = scopes.get(request);
    // the handler threw after it answered: its error was reported; the first answer (and its status) stands
    const first = sending.get(request);
    if (first !== undefined) return void reply.code(first).hijack();
    if (!scope) return next(null, payload);
    sending.set(request, reply.statusCode);
    if (scope.finish === 'after-response' || scope.endIfUntouched()) return next(null, payload);
    // as the handler gave it: a late error's handler may change status and type meanwhile
    const status = reply.statusCode;
    const type = reply.getHeader('content-type');
    scope.end({ status }).then((result) => {
      const { response } = result;
      if (!response) {
        if (reply.statusCode !== status) reply.code(status).header('content-type', type);
        // Fastify writes its own headers over the raw response's: the read-your-writes token goes through the reply
        if (result.headers) for (const [name, value] of Object.entries(result.headers)) reply.header(name, name === 'set-cookie' ? mergeCookies(reply.getHeader(name), value) : value);
        return next(null, payload);
      }
      reportCommitFailure(options, request, result, report(request));
      (payload as { destroy?: () => void } | null)?.destroy?.();
      const rendered = renderHttpError(response);
      sending.set(request, rendered.status);
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

/** The app's cookies plus the token's (the token replaces an older one of the same name). */
function mergeCookies(current: unknown, added: string | string[]): string[] {
  const ours = Array.isArray(added) ? added : [added];
  const names = new Set(ours.map((cookie) => cookie.slice(0, cookie.indexOf('='))));
  const theirs = current === undefined ? [] : (Array.isArray(current) ? current : [current]).map(String);
  return [...theirs.filter((cookie) => !names.has(cookie.slice(0, cookie.indexOf('=')))), ...ours];
}

import type { Sequelize } from 'sequelize';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EngineOptions } from '../config.js';
import type { RequestSessionOptions } from '../request-scope.js';
import { Fixture } from './fixture.js';
import { listen, readBodyWithCallbacks, type ConformanceAdapter, type ConformanceApp, type RequestLike } from './kit.js';
import { hostileScenarios } from './hostile-scenarios.js';
import { http2Scenarios } from './http2-scenarios.js';
import { scenarios, type ScenarioContext } from './scenarios.js';

/**
 * Run every conformance scenario (SPEC §3 rules 1-6) against one adapter, over real HTTP on
 * 127.0.0.1 and a real PostgreSQL database of its own. After each scenario, every engine's pool
 * must have nothing in use and no backend may be left `idle in transaction`.
 * @example
 * runConformanceSuite({
 *   name: 'express',
 *   async createApp(kit) {
 *     const app = express().use(sessionLocal(kit.options), express.json());
 *     for (const route of kit.routes) app[route.method === 'GET' ? 'get' : 'post'](route.path, ...);
 *     return kit.listen(http.createServer(app));
 *   },
 * });
 */
export function runConformanceSuite<S extends Sequelize = Sequelize>(adapter: ConformanceAdapter<S>): void {
  describe(`${adapter.name} adapter conformance`, () => {
    const fx = new Fixture(adapter.engineOptions as Pick<EngineOptions, 'sequelizeClass' | 'sequelize'> | undefined);
    const apps: ConformanceApp[] = [];
    const t: ScenarioContext = {
      fx,
      async app(routes, options, registrations = []) {
        const errors: unknown[] = [];
        const kit = {
          options: { factory: fx.factory, ...options } as RequestSessionOptions<RequestLike>,
          registrations,
          routes,
          onError: (error: unknown) => void errors.push(error),
          readBodyWithCallbacks,
          listen,
          http2: t.http2 === true,
        };
        const app = await adapter.createApp(kit);
        apps.push(app);
        return { url: app.url, errors };
      },
    };

    beforeAll(() => fx.setup());

    afterEach(async () => {
      await Promise.all(apps.splice(0).map((app) => app.close()));
      const engines = [fx.engine, ...fx.extraEngines];
      const deadline = Date.now() + 5000;
      let inUse: number[] = [];
      let idle = 0;
      do {
        inUse = engines.map((engine) => engine.stats().pool.inUse);
        idle = await fx.idleInTransaction();
        if (inUse.every((n) => n === 0) && idle === 0) break;
        await new Promise((resolve) => setTimeout(resolve, 20));
      } while (Date.now() < deadline);
      await fx.disposeExtraEngines();
      expect(inUse, 'connections still in use after the scenario').toEqual(engines.map(() => 0));
      expect(idle, 'backends left idle in transaction').toBe(0);
    });

    afterAll(() => fx.teardown());

    const sequelizeClass = adapter.engineOptions?.sequelizeClass;
    if (sequelizeClass) it(`makes every engine over the given sequelizeClass (${sequelizeClass.name})`, () => expect(fx.engine.sequelize).toBeInstanceOf(sequelizeClass));

    for (const scenario of [...scenarios, ...hostileScenarios]) {
      it(`${scenario.name} [§3 rule ${scenario.rules.join(', ')}]`, () => scenario.run(t));
    }

    // an adapter that says nothing about HTTP/2 gets no HTTP/2 block (an empty describe fails vitest)
    if (adapter.http2 === undefined) return;
    describe('over HTTP/2', () => {
      if (typeof adapter.http2 === 'string') it.skip(`not run: ${adapter.http2}`, () => undefined);
      if (adapter.http2 !== true) return;
      for (const scenario of http2Scenarios) {
        it(`${scenario.name} [§3 rule ${scenario.rules.join(', ')}]`, async () => {
          t.http2 = true;
          try {
            await scenario.run(t);
          } finally {
            t.http2 = false;
          }
        });
      }
    });
  });
}

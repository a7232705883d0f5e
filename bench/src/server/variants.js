// The data layer of each variant, independent of the framework: pool max 10 everywhere, the
// same Sequelize models (from @sessionlocal/shop-domain) for every Sequelize-based variant.
import { createEngine, sessionmaker } from '@sessionlocal/session-core';
import { defineModels } from '@sessionlocal/shop-domain';
import clsHooked from 'cls-hooked';
import pg from 'pg';
import { Sequelize } from 'sequelize';
import { sequelizeUseCases } from './domain.js';
import { instrumentPgPool, instrumentSequelizePool } from './hold.js';

export const POOL_MAX = 10;
export const ACQUIRE_TIMEOUT_MS = 30_000;
const IDLE_TIMEOUT_MS = 10_000;
/** The `sessionlocal-deferred` factory's options. */
export const DEFERRED_OPTIONS = { deferredReads: true, isolationLevel: 'READ COMMITTED' };

/** The Sequelize options session-core's engine uses, for the hand-written variants. */
function plainSequelize(url) {
  return new Sequelize(url, {
    dialect: 'postgres',
    dialectModule: pg,
    logging: false,
    pool: { max: POOL_MAX, min: 0, acquire: ACQUIRE_TIMEOUT_MS, idle: IDLE_TIMEOUT_MS, evict: 1000 },
  });
}

/** A `pg.Pool` with the same size and acquire timeout. */
export function pgPoolOptions(url) {
  return { connectionString: url, max: POOL_MAX, connectionTimeoutMillis: ACQUIRE_TIMEOUT_MS, idleTimeoutMillis: IDLE_TIMEOUT_MS };
}

/**
 * Open the variant's data layer. Returns what the framework wiring needs plus `close()`.
 * `fastify-postgres` opens its pool inside the Fastify plugin (see fastify.js).
 */
export async function openVariant(variant, url, recorder) {
  switch (variant) {
    case 'bare':
    case 'fastify-postgres':
      return { close: async () => {} };
    case 'raw-pg': {
      const pool = new pg.Pool(pgPoolOptions(url));
      instrumentPgPool(pool, recorder);
      return { pool, close: () => pool.end() };
    }
    case 'sequelize-manual': {
      const sequelize = plainSequelize(url);
      instrumentSequelizePool(sequelize, recorder);
      const useCases = sequelizeUseCases(sequelize, defineModels(sequelize));
      return { sequelize, useCases, close: () => sequelize.close() };
    }
    case 'sequelize-cls': {
      // The legacy pattern: one process-global cls-hooked namespace for every Sequelize instance.
      const ns = clsHooked.createNamespace('bench-sequelize');
      Sequelize.useCLS(ns);
      const sequelize = plainSequelize(url);
      instrumentSequelizePool(sequelize, recorder);
      const useCases = sequelizeUseCases(sequelize, defineModels(sequelize));
      /** Cheap guard that the handler really runs inside the request's managed transaction. */
      const requireTransaction = () => {
        if (!ns.get('transaction')) throw new Error('sequelize-cls: no transaction in the CLS context (context lost)');
      };
      return { sequelize, ns, useCases, requireTransaction, close: () => sequelize.close() };
    }
    case 'sessionlocal':
    case 'sessionlocal-deferred':
    case 'sessionlocal-otel': {
      const engine = createEngine(url, { pool: { max: POOL_MAX } });
      instrumentSequelizePool(engine.sequelize, recorder);
      // sessionlocal-deferred: the opt-in deferred-read mode (docs/semantics.md), READ COMMITTED as it requires
      const SessionLocal = variant === 'sessionlocal-deferred' ? sessionmaker(engine, DEFERRED_OPTIONS) : sessionmaker(engine);
      // a core that predates the option ignores it: say so in the results rather than measure the default mode under its name
      const notes = variant === 'sessionlocal-deferred' && SessionLocal.options?.deferredReads !== true ? ['deferredReads not honoured by this session-core build (ran in the default mode)'] : [];
      // sessionlocal-otel: @sessionlocal/otel on a real SDK (request spans, session spans, pool metrics)
      const telemetry = variant === 'sessionlocal-otel' ? await (await import('./otel.js')).startTelemetry(SessionLocal) : undefined;
      const useCases = sequelizeUseCases(engine.sequelize, defineModels(engine.sequelize));
      return {
        engine,
        SessionLocal,
        notes,
        useCases,
        wrapListener: telemetry?.wrapListener,
        close: async () => {
          await engine.dispose({ timeoutMs: 2000 });
          await telemetry?.shutdown();
        },
      };
    }
    default:
      throw new Error(`unknown variant ${variant}`);
  }
}

/** Thrown inside a managed transaction to make Sequelize roll it back (response status >= 400). */
export class Rollback extends Error {}

/** `{ server, listen(host) }` for a plain `node:http` server: listen on a free port of `host`. */
export function listenable(server) {
  return {
    server,
    listen: (host) =>
      new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, host, () => resolve(server.address().port));
      }),
  };
}

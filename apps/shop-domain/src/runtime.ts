import { engineFromEnv, sessionmaker, type Engine, type SessionFactory } from '@sessionlocal/session-core';
import { shopConfigFromEnv, type ShopConfig } from './config.js';
import { startEmbeddedDatabase, stopEmbeddedDatabase, type EmbeddedDatabase } from './embedded.js';
import { migrate } from './migrate.js';
import { defineModels } from './models.js';
import { Shop } from './shop.js';

/** A ready shop: database migrated, engine and `SessionLocal` created, models defined. */
export interface ShopRuntime {
  config: ShopConfig;
  engine: Engine;
  SessionLocal: SessionFactory;
  shop: Shop;
  /**
   * The engine has read replicas (`DATABASE_REPLICA_URLS`): the apps serve `GET /items/:id` and
   * `GET /orders/:id` from read-only sessions (a replica, else the primary as fallback) and turn
   * on read-your-writes, so a client that sends back the `sl_lsn` cookie or `x-sessionlocal-lsn`
   * header of its `POST /orders` reads its own order.
   */
  replicas: boolean;
  /** Dispose the engine (waits for open sessions), then stop the embedded PostgreSQL if this process started one. */
  close(): Promise<void>;
}

export interface OpenShopOptions {
  env?: NodeJS.ProcessEnv;
  /** Application name shown in `pg_stat_activity`. */
  name?: string;
  log?: (line: string) => void;
}

/**
 * Open the shop's database: `DATABASE_URL`, or (unset) a fresh embedded PostgreSQL in a
 * temporary directory; run the migrations; build the engine from `DB_POOL_*` and friends.
 */
export async function openShop(options: OpenShopOptions = {}): Promise<ShopRuntime> {
  const env = options.env ?? process.env;
  const log = options.log ?? (() => {});
  const config = shopConfigFromEnv(env);
  let embedded: EmbeddedDatabase | undefined;
  let url = config.databaseUrl;
  if (!url) {
    log('DATABASE_URL is not set: starting an embedded PostgreSQL');
    embedded = await startEmbeddedDatabase();
    url = embedded.url;
    log(`embedded PostgreSQL on 127.0.0.1:${embedded.port} (data in ${embedded.dataDir}, removed on exit)`);
  }
  try {
    // The engine validates DB_POOL_* and friends without I/O: a bad value fails before any migration.
    const engine = engineFromEnv({ ...env, DATABASE_URL: url }, options.name ? { applicationName: options.name } : {});
    for (const name of await migrate(url)) log(`migration applied: ${name}`);
    const SessionLocal = sessionmaker(engine, { expireOnCommit: false });
    const models = defineModels(engine.sequelize);
    const shop = new Shop({ engine, SessionLocal, models, faults: config.faults });
    if (config.faults) log('SHOP_FAULTS=1: POST /orders honours x-fail-at');
    let closing: Promise<void> | undefined;
    const close = () =>
      (closing ??= (async () => {
        try {
          await engine.dispose({ timeoutMs: 5_000 });
        } finally {
          if (embedded) await stopEmbeddedDatabase(embedded);
        }
      })());
    const replicas = engine.stats().pools !== undefined;
    if (replicas)
      log(
        `read replicas: ${engine
          .stats()
          .pools?.replicas.map((r) => r.url)
          .join(', ')} (GET /items/:id and GET /orders/:id read from them; read-your-writes on)`,
      );
    return { config, engine, SessionLocal, shop, replicas, close };
  } catch (error) {
    if (embedded) await stopEmbeddedDatabase(embedded).catch(() => {});
    throw error;
  }
}

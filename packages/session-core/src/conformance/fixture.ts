import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createEngine, type Engine } from '../engine.js';
import type { EngineOptions } from '../config.js';
import { sessionmaker, type SessionFactory } from '../sessionmaker.js';
import { createTestDatabase, type TestDatabase } from '../testing/database.js';

const SCHEMA = `
CREATE TABLE conf_items (id serial PRIMARY KEY, label text NOT NULL);
CREATE TABLE conf_unique (k int NOT NULL, CONSTRAINT conf_unique_k UNIQUE (k) DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE conf_slow (id serial PRIMARY KEY, label text NOT NULL);
CREATE FUNCTION conf_slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER conf_slow_commit AFTER INSERT ON conf_slow DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION conf_slow_commit();
CREATE TABLE conf_tenant_rows (id serial PRIMARY KEY, tenant_id int NOT NULL, label text NOT NULL);
ALTER TABLE conf_tenant_rows ENABLE ROW LEVEL SECURITY;
ALTER TABLE conf_tenant_rows FORCE ROW LEVEL SECURITY;
CREATE POLICY conf_tenant_isolation ON conf_tenant_rows USING (tenant_id = current_setting('app.tenant_id')::int);
INSERT INTO conf_tenant_rows (tenant_id, label) SELECT t, 'row ' || i FROM generate_series(1, 2) t, generate_series(1, 3) i;
`;

/**
 * The database of one conformance run: its own database (tables `conf_items`, `conf_unique`
 * with a deferred unique constraint, `conf_slow` whose COMMIT takes 300 ms, `conf_tenant_rows`
 * under forced row-level security), the main engine and factory, an observer connection
 * outside any pool, and the extra engines scenarios make (checked and disposed after each).
 */
export class Fixture {
  engine!: Engine;
  factory!: SessionFactory;
  observer!: pg.Client;
  extraEngines: Engine[] = [];
  private db!: TestDatabase;
  private roles: string[] = [];

  /** `engineOptions` apply to every engine of the run (the main one and those of `newEngine`). */
  constructor(private readonly engineOptions: Pick<EngineOptions, 'sequelizeClass' | 'sequelize'> = {}) {}

  get url(): string {
    return this.db.url;
  }

  async setup(): Promise<void> {
    this.db = await createTestDatabase('sl_conformance');
    this.observer = new pg.Client({ connectionString: this.db.url });
    await this.observer.connect();
    await this.observer.query(SCHEMA);
    this.engine = createEngine(this.db.url, { ...this.engineOptions, pool: { max: 10, acquireTimeoutMs: 10_000 } });
    this.factory = sessionmaker(this.engine);
  }

  /** An extra engine for one scenario (its pool is checked and disposed after the scenario). */
  newEngine(options: EngineOptions = {}, url = this.db.url): Engine {
    const engine = createEngine(url, { ...this.engineOptions, ...options });
    this.extraEngines.push(engine);
    return engine;
  }

  /** A uniquely named non-superuser login role that may read and write `conf_tenant_rows`; its URL. */
  async tenantRoleUrl(): Promise<string> {
    const role = `sl_rls_${randomBytes(4).toString('hex')}`;
    const password = randomBytes(8).toString('hex');
    await this.observer.query(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '${password}'`);
    this.roles.push(role);
    await this.observer.query(`GRANT USAGE ON SCHEMA public TO ${role}; GRANT SELECT, INSERT ON conf_tenant_rows TO ${role}; GRANT USAGE ON SEQUENCE conf_tenant_rows_id_seq TO ${role}`);
    const url = new URL(this.db.url);
    url.username = role;
    url.password = password;
    return url.toString();
  }

  /** Rows of `table` with this label, seen from outside any session. */
  async count(table: 'conf_items' | 'conf_slow', label: string): Promise<number> {
    const { rows } = await this.observer.query(`SELECT count(*)::int AS n FROM ${table} WHERE label = $1`, [label]);
    return rows[0].n;
  }

  /** Backends of the test database left `idle in transaction`. */
  async idleInTransaction(): Promise<number> {
    const { rows } = await this.observer.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()`);
    return rows[0].n;
  }

  async disposeExtraEngines(): Promise<void> {
    await Promise.all(this.extraEngines.splice(0).map((engine) => engine.dispose({ timeoutMs: 1000 })));
  }

  async teardown(): Promise<void> {
    await this.disposeExtraEngines();
    await this.engine?.dispose({ timeoutMs: 1000 });
    for (const role of this.roles.splice(0)) await this.observer.query(`DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`);
    await this.observer?.end();
    await this.db?.drop();
  }
}

/** A label no other scenario uses. */
export function uniqueLabel(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

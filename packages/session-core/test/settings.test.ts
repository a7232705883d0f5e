import { describe, expect, it } from 'vitest';
import { ConfigError, createEngine, sessionmaker } from '../src/index.js';
import { countRoundTrips, useDatabase } from './support.js';

const h = useDatabase();

const setting = async (name: string) => {
  const [rows] = (await h.engine.sequelize.query('SELECT current_setting($1, true) AS v', { bind: [name] })) as [Array<{ v: string | null }>, unknown];
  return rows[0]!.v;
};

describe('rule 10: transaction-local settings', () => {
  it('are applied with set_config(..., true), values bound, and end with the transaction', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const hostile = "x'; DROP TABLE pg_class; --";
    const seen = await SessionLocal.begin(
      async () => {
        const [rows] = (await engine.sequelize.query("SELECT current_setting('app.tenant_id') AS t, current_setting('app.note') AS n, pg_backend_pid() AS pid")) as [
          Array<{ t: string; n: string; pid: number }>,
          unknown,
        ];
        return rows[0]!;
      },
      { settings: { 'app.tenant_id': '42', 'app.note': hostile } },
    );
    expect(seen.t).toBe('42');
    expect(seen.n).toBe(hostile);
    // the next user of the same pooled connection sees nothing
    const after = await SessionLocal.begin(async () => {
      const [rows] = (await engine.sequelize.query("SELECT current_setting('app.tenant_id', true) AS t, pg_backend_pid() AS pid")) as [Array<{ t: string | null; pid: number }>, unknown];
      return rows[0]!;
    });
    expect(after.pid).toBe(seen.pid);
    expect(after.t ?? '').toBe('');
  });

  it('factory settings can be overridden per session, name by name (the others are kept)', async () => {
    const Tenanted = sessionmaker(h.engine, { settings: { 'app.tenant_id': '1', statement_timeout: '1500' } });
    expect(await Tenanted.begin(() => setting('app.tenant_id'))).toBe('1');
    const both = () => Promise.all([setting('app.tenant_id'), setting('statement_timeout'), setting('app.user')]);
    expect(await Tenanted.begin(both, { settings: { 'app.tenant_id': '2', 'app.user': 'ada' } })).toEqual(['2', '1500ms', 'ada']);
  });

  it.each([['x; drop table'], ['app.tenant id'], [''], ['a.b.c'], ['1abc']])('rejects the setting name %j with a ConfigError naming it', (name) => {
    const attempt = () => h.SessionLocal({ settings: { [name]: 'v' } });
    expect(attempt).toThrow(ConfigError);
    try {
      attempt();
    } catch (e) {
      expect((e as ConfigError).field).toBe(`settings.${JSON.stringify(name)}`);
    }
  });

  it('rejects non-string values', () => {
    expect(() => h.SessionLocal({ settings: { 'app.n': 5 as unknown as string } })).toThrow(/settings\.app\.n: must be a string/);
  });

  describe('in one pipeline with BEGIN and the first statement', () => {
    it.each([
      ['a statement without parameters', "SELECT current_setting('app.t') AS t", undefined, 2],
      ['a statement with parameters', "SELECT current_setting('app.t') AS t, $1::int AS one", [1], 2],
      ['explicit begin() then a statement', "SELECT current_setting('app.t') AS t", undefined, 3],
      ['several statements in one text (BEGIN and settings first, then the text)', "SELECT 1; SELECT current_setting('app.t') AS t", undefined, 3],
    ])('%s: every statement sees the settings (%#)', async (name, sql, bind, expected) => {
      const engine = createEngine(h.db.url, { pool: { max: 1 } });
      h.engines.push(engine);
      const SessionLocal = sessionmaker(engine, { settings: { 'app.t': 'v1' } });
      let seen: unknown;
      const n = await countRoundTrips(sessionmaker(engine), () =>
        SessionLocal.begin(async (db) => {
          if (name.startsWith('explicit')) await db.begin();
          const [rows] = (await engine.sequelize.query(sql, bind ? { bind } : {})) as [Array<{ t: string }>, unknown];
          seen = rows[rows.length - 1]!.t;
        }),
      );
      expect(seen).toBe('v1');
      expect(n).toBe(expected); // …, COMMIT
    });

    it('all or nothing: a setting the server refuses means the statement never ran, and the session is failed', async () => {
      const engine = createEngine(h.db.url, { pool: { max: 1 } });
      h.engines.push(engine);
      // a real parameter with an invalid value: set_config fails on the server
      const SessionLocal = sessionmaker(engine, { settings: { statement_timeout: 'not a duration' } });
      await engine.autocommit(() => engine.sequelize.query('CREATE TABLE IF NOT EXISTS settings_pipeline (n int)'));
      const attempt = SessionLocal.begin(async (db) => {
        await expect(engine.sequelize.query('INSERT INTO settings_pipeline VALUES ($1)', { bind: [1] })).rejects.toThrow(/statement_timeout/);
        expect(db.state).toBe('failed');
      });
      await expect(attempt).rejects.toThrow();
      const [rows] = (await engine.autocommit(() => engine.sequelize.query('SELECT count(*)::int AS n FROM settings_pipeline'))) as [Array<{ n: number }>, unknown];
      expect(rows[0]!.n).toBe(0);
      expect(engine.stats().pool.inUse).toBe(0);
    });
  });
});

import { describe, expect, it } from 'vitest';
import { ConfigError, createEngine, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';

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
});

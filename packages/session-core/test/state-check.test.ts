import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommitError, ConfigError, SessionStateLeftError, createEngine, sessionmaker, type Engine } from '../src/index.js';
import { findPgbouncer, TestBouncer } from './pgbouncer.js';
import { useDatabase } from './support.js';

// §2 rule 13 behind a transaction pooler: with `sessionStateCheck: 'before-commit'` a transaction
// whose statements may have left session-level state is checked before COMMIT, in the same
// transaction; what is found is cleaned up and rolled back, never committed, never left on the
// server backend for the next client. Run directly and behind a real PgBouncer (transaction mode).

const h = useDatabase();

/** Each form of session-level state, and a probe that reads it back on the same backend (0 / the default when clean). */
const FORMS: Array<{ sql: string; left: RegExp | 'undone'; probe: string; clean: string | number }> = [
  { sql: "SET work_mem = '7MB'", left: /setting work_mem/, probe: "SELECT current_setting('work_mem') AS v", clean: '4MB' },
  { sql: "SELECT set_config('work_mem', '7MB', false)", left: /setting work_mem/, probe: "SELECT current_setting('work_mem') AS v", clean: '4MB' },
  { sql: 'DO $$ BEGIN PERFORM set_config($q$work_mem$q$, $q$7MB$q$, false); END $$', left: /setting work_mem/, probe: "SELECT current_setting('work_mem') AS v", clean: '4MB' },
  { sql: 'SET ROLE sl_state_role', left: /role sl_state_role/, probe: 'SELECT current_user::text AS v', clean: 'postgres' },
  { sql: 'SELECT pg_advisory_lock(4242)', left: /1 session advisory lock/, probe: "SELECT count(*)::int AS v FROM pg_locks WHERE locktype = 'advisory'", clean: 0 },
  // a LISTEN takes effect at COMMIT, so no catalog shows it before: undone (UNLISTEN * in the transaction), the commit goes on
  { sql: 'LISTEN sl_jobs', left: 'undone', probe: 'SELECT count(*)::int AS v FROM pg_listening_channels()', clean: 0 },
  { sql: 'PREPARE sl_prepared AS SELECT 1', left: /prepared statement sl_prepared/, probe: 'SELECT count(*)::int AS v FROM pg_prepared_statements WHERE from_sql', clean: 0 },
  { sql: 'CREATE TEMP TABLE sl_temp (x int)', left: /temp table sl_temp/, probe: 'SELECT count(*)::int AS v FROM pg_class WHERE relnamespace = pg_my_temp_schema()', clean: 0 },
  { sql: 'DECLARE sl_cursor CURSOR WITH HOLD FOR SELECT 1', left: /cursor WITH HOLD sl_cursor/, probe: 'SELECT count(*)::int AS v FROM pg_cursors', clean: 0 },
];

beforeAll(async () => {
  await h.observer.query('CREATE TABLE state_rows (label text); DROP ROLE IF EXISTS sl_state_role; CREATE ROLE sl_state_role; GRANT ALL ON state_rows TO sl_state_role');
});

afterAll(async () => {
  await h.observer.query('DROP OWNED BY sl_state_role; DROP ROLE IF EXISTS sl_state_role').catch(() => undefined);
});

const rows = async (label: string) => (await h.observer.query('SELECT count(*)::int AS n FROM state_rows WHERE label = $1', [label])).rows[0].n as number;

/** For every form: the transaction is refused (CommitError caused by SessionStateLeftError naming it), its row not saved, the backend clean. */
async function expectEveryFormRefused(engine: Engine, probe?: (sql: string) => Promise<unknown>): Promise<void> {
  const SessionLocal = sessionmaker(engine);
  const run = Math.random().toString(36).slice(2);
  for (const [i, form] of FORMS.entries()) {
    const label = `refused-${run}-${i}`;
    const failure = await SessionLocal.begin(async () => {
      await engine.sequelize.query('INSERT INTO state_rows VALUES ($1)', { bind: [label] });
      await engine.sequelize.query(form.sql);
    }).then(
      () => undefined,
      (error: unknown) => error,
    );
    if (form.left === 'undone') {
      expect(failure, form.sql).toBeUndefined();
      expect(await rows(label), form.sql).toBe(1);
    } else {
      expect(failure, form.sql).toBeInstanceOf(CommitError);
      const cause = (failure as CommitError).cause;
      expect(cause, form.sql).toBeInstanceOf(SessionStateLeftError);
      expect((cause as SessionStateLeftError).left.join(', '), form.sql).toMatch(form.left);
      expect(await rows(label), form.sql).toBe(0);
    }
    if (probe) expect(await probe(form.probe), form.sql).toBe(form.clean);
  }
  // a gated but clean transaction (a DO block that leaves nothing, a transaction-level lock) commits
  await SessionLocal.begin(async () => {
    await engine.sequelize.query('INSERT INTO state_rows VALUES ($1)', { bind: [`clean-${run}`] });
    await engine.sequelize.query('DO $$ BEGIN PERFORM pg_advisory_xact_lock(77); END $$');
  });
  expect(await rows(`clean-${run}`)).toBe(1);
  expect(engine.stats().pool.inUse).toBe(0);
}

describe("sessionStateCheck: 'before-commit' (rule 13)", () => {
  it('is validated: anything but off / before-commit is a ConfigError naming the field', () => {
    expect(() => createEngine(h.db.url, { sessionStateCheck: 'always' as never })).toThrow(ConfigError);
    expect(() => createEngine(h.db.url, { sessionStateCheck: 'always' as never })).toThrow(/sessionStateCheck/);
  });

  it('directly on PostgreSQL: every form of session-level state is refused before COMMIT and nothing is saved', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 2 }, sessionStateCheck: 'before-commit' });
    h.engines.push(engine);
    // directly, the connection is destroyed after a gated transaction anyway: no backend to probe
    await expectEveryFormRefused(engine);
  });

  const binary = findPgbouncer();
  const behind = binary ? it : it.skip;
  if (!binary) it('behind PgBouncer (skipped: no pgbouncer binary; apt-get install -y pgbouncer)', () => undefined);

  behind(
    'behind PgBouncer in transaction mode: without the check state reaches the next client; with it, every form is refused and the backend stays clean',
    async () => {
      const bouncer = new TestBouncer(binary as string, h.db.url);
      await bouncer.start();
      // another client of the same bouncer: with pool_size=1 its statements run on the same backend
      const next = new pg.Client({ connectionString: bouncer.bouncedUrl });
      try {
        await next.connect();
        const probe = async (sql: string) => (await next.query(sql)).rows[0].v;
        const unchecked = createEngine(bouncer.bouncedUrl, { pool: { max: 1 } });
        h.engines.push(unchecked);
        await sessionmaker(unchecked).begin(() => unchecked.sequelize.query("SET work_mem = '7MB'"));
        // the client connection was destroyed (rule 13), the server backend was not cleaned
        expect(await probe("SELECT current_setting('work_mem') AS v")).toBe('7MB');
        await next.query('RESET work_mem');

        const checked = createEngine(bouncer.bouncedUrl, { pool: { max: 1 }, sessionStateCheck: 'before-commit' });
        h.engines.push(checked);
        await expectEveryFormRefused(checked, probe);
      } finally {
        await next.end().catch(() => undefined);
        await bouncer.stop();
      }
    },
    60_000,
  );
});

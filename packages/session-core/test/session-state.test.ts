import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RawTransactionControlError, createEngine, sessionmaker } from '../src/index.js';
import { mayLeaveSessionState, transactionControlIn } from '../src/session-state.js';
import { useDatabase } from './support.js';

const h = useDatabase();

// Statements that leave session-level state, and ones that do not, in many disguises.
const leaving = [
  "SET work_mem = '7MB'",
  'SET ROLE postgres',
  'SET SESSION AUTHORIZATION DEFAULT',
  'RESET work_mem',
  "SELECT set_config('app.tenant_id', '42', false)",
  "SELECT set_config('app.tenant_id', $1, $2)",
  "WITH t AS (SELECT set_config('app.tenant_id', '1', false) AS v) SELECT v FROM t",
  'SELECT pg_advisory_lock(42)',
  'SELECT pg_try_advisory_lock(42)',
  'SELECT pg_advisory_lock_shared(1, 2)',
  'LISTEN channel',
  'PREPARE p AS SELECT 1',
  'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
  'CREATE TEMP TABLE t (n int)',
  'CREATE TEMPORARY TABLE t (n int)',
  "DO $$ BEGIN PERFORM set_config('a.b', 'c', false); END $$",
  "DO $body$ BEGIN EXECUTE 'SET work_mem = ''7MB'''; END $body$",
  'SELECT 1 AS n INTO TEMP t',
];
const harmless = [
  'SELECT 1',
  "SET LOCAL work_mem = '9MB'",
  'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
  'SET CONSTRAINTS ALL IMMEDIATE',
  "SELECT set_config('app.tenant_id', '42', true)",
  "SELECT set_config('app.tenant_id', $1, true)",
  'SELECT pg_advisory_xact_lock(42)',
  'SELECT pg_try_advisory_xact_lock(42)',
  'INSERT INTO settings (name) VALUES ($1) RETURNING id',
  'UPDATE "Items" SET "name" = $1 WHERE "id" = $2',
  "INSERT INTO notes (body) VALUES ('a; SET work_mem = 1; COMMIT')",
  'SELECT 1 AS "; SET x = 1"',
];

const comment = fc.constantFrom('', ' ', '\n', '/* c */ ', '/* a /* nested */ b */ ', '-- note\n', '--\n', '\t');
const lead = fc.constantFrom('', 'SELECT 1; ', 'SELECT 1;', 'SELECT 2 ;\n');
const casing = fc.constantFrom(
  (s: string) => s,
  (s: string) => s.toLowerCase(),
  (s: string) => s.toUpperCase(),
);

describe('raw transaction control inside a session is refused before it is sent (§6: no statement runs outside its session)', () => {
  it('COMMIT, ROLLBACK, BEGIN, END, ABORT in any disguise are found; ROLLBACK TO SAVEPOINT, data and function bodies are not (generated)', () => {
    const control = [
      'COMMIT',
      'COMMIT AND CHAIN',
      'END',
      'ROLLBACK',
      'ABORT',
      'BEGIN',
      'START TRANSACTION',
      "PREPARE TRANSACTION 'x'",
      "INSERT INTO t VALUES ('a'); COMMIT; INSERT INTO t VALUES ('b')",
    ];
    const fine = [
      'ROLLBACK TO SAVEPOINT "sp-1"',
      'SAVEPOINT "sp-1"',
      'RELEASE SAVEPOINT "sp-1"',
      "INSERT INTO t VALUES ('x; COMMIT')",
      'CREATE OR REPLACE FUNCTION pg_temp.f() RETURNS int AS $f$ BEGIN RETURN 1; END $f$ LANGUAGE plpgsql; SELECT pg_temp.f()',
      'SELECT "commit" FROM t',
    ];
    fc.assert(
      fc.property(fc.constantFrom(...control), comment, lead, casing, (statement, before, prefix, cased) => {
        expect(transactionControlIn(`${before}${prefix}${cased(statement)}`)).toBeDefined();
      }),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(fc.constantFrom(...fine), comment, fc.constantFrom('', 'SELECT 1; '), (statement, before, prefix) => {
        expect(transactionControlIn(`${before}${prefix}${statement}`)).toBeUndefined();
      }),
      { numRuns: 200 },
    );
  });

  it('a multi-statement text with a COMMIT inside is refused: nothing after it autocommits, the session rolls back as a whole', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    await engine.autocommit(() => engine.sequelize.query('CREATE TABLE IF NOT EXISTS raw_control (v text)'));
    const error = await SessionLocal.begin(async () => {
      await engine.sequelize.query("INSERT INTO raw_control VALUES ('before')");
      await engine.sequelize.query("INSERT INTO raw_control VALUES ('a'); COMMIT; INSERT INTO raw_control VALUES ('b')");
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RawTransactionControlError);
    expect((error as RawTransactionControlError).statement).toBe('COMMIT');
    const [rows] = await engine.autocommit(() => engine.sequelize.query('SELECT count(*)::int AS n FROM raw_control'));
    expect((rows as Array<{ n: number }>)[0]!.n).toBe(0);
  });
});

describe('rule 13: session-level state is recognised whatever form the SQL takes', () => {
  it('every disguise of a state-leaving statement is recognised (generated)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...leaving), comment, lead, casing, comment, (statement, before, prefix, cased, after) => {
        expect(mayLeaveSessionState(`${before}${prefix}${before}${cased(statement)}${after}`)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('harmless statements stay harmless in the same disguises (no needless reconnects)', () => {
    fc.assert(
      fc.property(fc.constantFrom(...harmless), comment, fc.constantFrom('', 'SELECT 1; '), casing, (statement, before, prefix, cased) => {
        // upper/lower-casing is applied to the keywords' statement only where it keeps the meaning
        const sql = `${before}${prefix}${statement.startsWith('INSERT') || statement.startsWith('UPDATE') ? statement : cased(statement)}`;
        expect(mayLeaveSessionState(sql)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('nothing a session set reaches the next session on the same pooled connection (real PostgreSQL, one connection)', async () => {
    const engine = createEngine(h.db.url, { pool: { max: 1 } });
    h.engines.push(engine);
    const SessionLocal = sessionmaker(engine);
    const probe = () =>
      SessionLocal.begin(async () => {
        const [rows] = (await engine.sequelize.query(
          "SELECT current_setting('app.tenant_id', true) AS tenant, current_setting('work_mem') AS wm, (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, (SELECT count(*)::int FROM pg_listening_channels()) AS listening",
        )) as [Array<{ tenant: string | null; wm: string; locks: number; listening: number }>, unknown];
        return rows[0]!;
      });
    const clean = await probe();
    for (const sql of [
      "/* c */ SET work_mem = '7MB'",
      "-- c\nSET work_mem = '7MB'",
      "SELECT 1; SET work_mem = '7MB'",
      "SELECT set_config('app.tenant_id', '42', false)",
      'SELECT pg_advisory_lock(42)',
      'LISTEN sl_channel',
      "DO $$ BEGIN PERFORM set_config('app.tenant_id', '7', false); END $$",
    ]) {
      await SessionLocal.begin(() => engine.sequelize.query(sql));
      expect(await probe(), sql).toEqual(clean);
    }
  });
});

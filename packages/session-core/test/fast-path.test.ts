import { QueryTypes } from 'sequelize';
import { describe, expect, it, beforeAll } from 'vitest';
import { TransactionAbortedError, createEngine, sessionmaker, type Engine, type SessionFactory } from '../src/index.js';
import { SessionClient } from '../src/pipelined-begin.js';
import { countRoundTrips, useDatabase } from './support.js';
import { defineModels, type Models } from './models.js';

const h = useDatabase();
let engine: Engine;
let SessionLocal: SessionFactory;
let m: Models;
const sent: string[] = [];

beforeAll(async () => {
  engine = createEngine(h.db.url, { pool: { max: 1 }, echo: (sql) => sent.push(sql.replace(/^Executing \([^)]*\): /, '')) });
  h.engines.push(engine);
  SessionLocal = sessionmaker(engine);
  m = await defineModels(engine);
  await engine.autocommit(() => m.Author.create({ name: 'Tolkien' }));
});

const select = (sql: string) => engine.sequelize.query(sql, { type: QueryTypes.SELECT }) as Promise<Array<Record<string, unknown>>>;

describe('BEGIN rides on the first plain SELECT (one round trip saved, same semantics)', () => {
  it('a session whose only statement is a SELECT costs two round trips: BEGIN+SELECT, COMMIT (logged as Sequelize would)', async () => {
    let author: unknown;
    const roundTrips = await countRoundTrips(SessionLocal, async () => {
      sent.length = 0;
      author = await SessionLocal.begin(() => m.Author.findOne({ where: { name: 'Tolkien' } }), { readOnly: true });
    });
    expect((author as { get(k: string): unknown } | null)?.get('name')).toBe('Tolkien');
    expect(roundTrips).toBe(2);
    // the log shows BEGIN and the user's statement apart, never a glued `BEGIN; SELECT`
    expect(sent).toHaveLength(3);
    expect(sent[0]).toBe('BEGIN READ ONLY');
    expect(sent[1]).toMatch(/^SELECT/);
    expect(sent[2]).toBe('COMMIT');
  });

  it('the statements still run inside one transaction with the requested isolation and read-only mode', async () => {
    const rows = await SessionLocal.begin(
      async () => {
        const first = await select("SELECT now() AS t, current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro");
        await new Promise((r) => setTimeout(r, 20));
        const second = await select('SELECT now() AS t');
        return [first[0]!, second[0]!];
      },
      { isolationLevel: 'REPEATABLE READ', readOnly: true },
    );
    expect(rows[0]!.iso).toBe('repeatable read');
    expect(rows[0]!.ro).toBe('on');
    expect(rows[1]!.t).toEqual(rows[0]!.t);
    const error = await SessionLocal.begin(() => m.Author.create({ name: 'not allowed' }), { readOnly: true }).catch((e: unknown) => e);
    expect((error as { parent?: { code?: string } }).parent?.code).toBe('25006');
  });

  it('a failing first SELECT leaves the transaction aborted (rule 7), and the connection comes back clean', async () => {
    const session = SessionLocal();
    await session.run(async () => {
      await expect(select('SELECT 1/0 AS boom')).rejects.toThrow(/division by zero/);
      await expect(select('SELECT 1 AS one')).rejects.toBeInstanceOf(TransactionAbortedError);
    });
    await session.close();
    await expect(SessionLocal.begin(() => select('SELECT 1 AS one'))).resolves.toEqual([{ one: 1 }]);
  });

  it('a parameterised write as first statement carries BEGIN in the same pipeline: one round trip, same transaction', async () => {
    const roundTrips = await countRoundTrips(SessionLocal, async () => {
      const session = SessionLocal();
      const author = await session.run(() => m.Author.create({ name: 'Pratchett' }));
      expect(author.get('id')).toEqual(expect.any(Number));
      const [rows] = (await session.run(() =>
        engine.sequelize.query("SELECT count(*)::int AS n, current_setting('transaction_isolation') AS iso, txid_current_if_assigned() IS NOT NULL AS in_tx FROM \"Authors\" WHERE name = 'Pratchett'"),
      )) as [Array<Record<string, unknown>>, unknown];
      expect(rows[0]).toEqual({ n: 1, iso: 'read committed', in_tx: true });
      await session.rollback();
      await session.close();
    });
    expect(roundTrips).toBe(3); // BEGIN+INSERT, SELECT, ROLLBACK
    await expect(engine.autocommit(() => m.Author.count({ where: { name: 'Pratchett' } }))).resolves.toBe(0);
  });

  it('a first write without parameters carries BEGIN in the same simple query, and still runs inside the transaction', async () => {
    const roundTrips = await countRoundTrips(SessionLocal, () =>
      SessionLocal.begin(async (session) => {
        sent.length = 0;
        await engine.sequelize.query(`INSERT INTO "Authors" (name) VALUES ('Gaiman')`);
        await session.rollback();
      }),
    );
    expect(sent).toEqual(['BEGIN', `INSERT INTO "Authors" (name) VALUES ('Gaiman')`, 'ROLLBACK']);
    expect(roundTrips).toBe(2);
    await expect(engine.autocommit(() => m.Author.count({ where: { name: 'Gaiman' } }))).resolves.toBe(0);
  });

  it('a failing pipelined first write leaves the transaction aborted (rule 7), and the connection comes back clean', async () => {
    const session = SessionLocal();
    await session.run(async () => {
      await expect(m.Author.create({ name: 'Tolkien' })).rejects.toThrow(/unique|Validation/i);
      await expect(select('SELECT 1 AS one')).rejects.toBeInstanceOf(TransactionAbortedError);
    });
    await session.close();
    await expect(SessionLocal.begin(() => select('SELECT 1 AS one'))).resolves.toEqual([{ one: 1 }]);
  });

  it('if the pipelined BEGIN fails, the server skips the statement: it never runs outside a transaction', async () => {
    const client = new SessionClient({ connectionString: h.db.url });
    await client.connect();
    try {
      await client.query('CREATE TEMP TABLE pipelined (n int)');
      client.beginWithNext = { text: 'BEGIN ISOLATION LEVEL NONSENSE', settings: undefined };
      await expect(client.query('INSERT INTO pipelined VALUES ($1)', [1])).rejects.toThrow(/syntax error/);
      expect(client.getTransactionStatus()).toBe('I');
      client.beginWithNext = { text: 'BEGIN', settings: undefined };
      const inserted = await client.query('INSERT INTO pipelined VALUES ($1) RETURNING n', [2]);
      expect(inserted.rows).toEqual([{ n: 2 }]); // the statement's own result, not BEGIN's
      expect(client.getTransactionStatus()).toBe('T');
      await client.query('ROLLBACK');
      expect((await client.query('SELECT count(*)::int AS n FROM pipelined')).rows).toEqual([{ n: 0 }]);
    } finally {
      await client.end();
    }
  });

  it('explicit begin() and transaction() send BEGIN at once', async () => {
    sent.length = 0;
    const session = SessionLocal();
    await session.begin();
    expect(sent).toEqual(['BEGIN']);
    await session.close();
    expect(sent).toEqual(['BEGIN', 'ROLLBACK']);
  });

  it('sessions with settings send BEGIN, the settings and the first statement in one round trip (values bound, never inlined or logged)', async () => {
    let rows: unknown;
    const roundTrips = await countRoundTrips(SessionLocal, async () => {
      sent.length = 0;
      rows = await SessionLocal.begin(() => select("SELECT current_setting('app.user') AS u"), { settings: { 'app.user': "o'brien" } });
    });
    expect(rows).toEqual([{ u: "o'brien" }]);
    expect(roundTrips).toBe(2); // BEGIN+set_config+SELECT, COMMIT
    expect(sent[0]).toMatch(/^BEGIN; SELECT set_config\(\$1, \$2, true\) -- app\.user$/);
    expect(sent.join('\n')).not.toContain("o'brien");
  });
});

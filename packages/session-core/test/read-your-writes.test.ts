import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openRequestScope } from '../src/adapter/index.js';
import { mayWrite } from '../src/read-your-writes.js';
import { lsnAtLeast } from '../src/replicas.js';
import { useDatabase } from './support.js';

const h = useDatabase();

const hex = (max: bigint) => fc.bigInt({ min: 0n, max }).map((n) => n.toString(16).toUpperCase());
const lsn = fc.tuple(hex(0xffffffffn), hex(0xffffffffn)).map(([hi, lo]) => `${hi}/${lo}`);

describe('read-your-writes building blocks', () => {
  it('lsnAtLeast orders WAL positions exactly as PostgreSQL orders pg_lsn', async () => {
    const pairs = fc.sample(fc.tuple(lsn, lsn), 300);
    pairs.push(['0/0', '0/0'], ['1/0', '0/FFFFFFFF'], ['0/16B3748', '0/16B3749']);
    const { rows } = await h.observer.query<{ ge: boolean }>('SELECT a::pg_lsn >= b::pg_lsn AS ge FROM unnest($1::text[], $2::text[]) AS t(a, b)', [pairs.map((p) => p[0]), pairs.map((p) => p[1])]);
    for (const [i, [a, b]] of pairs.entries()) expect(lsnAtLeast(a, b), `${a} >= ${b}`).toBe(rows[i]?.ge);
  });

  it('a read-only request gets minLsn from the header or the cookie among any other cookies; a malformed token is ignored', () => {
    const SessionLocal = h.SessionLocal;
    const options = { factory: SessionLocal, readYourWrites: true as const, readOnly: () => true };
    const cookieName = fc.stringMatching(/^[a-z_]{1,8}$/).filter((n) => n !== 'sl_lsn');
    const other = fc.array(fc.tuple(cookieName, fc.stringMatching(/^[A-Za-z0-9/]{0,12}$/)), { maxLength: 4 });
    fc.assert(
      fc.property(lsn, other, other, fc.boolean(), (position, before, after, viaHeader) => {
        const cookies = [...before, ['sl_lsn', position] as const, ...after].map(([k, v]) => `${k}=${v}`).join('; ');
        const headers = viaHeader ? { 'x-sessionlocal-lsn': position } : { cookie: cookies };
        const scope = openRequestScope(options, { headers });
        expect(scope?.session.options.minLsn).toBe(position.toUpperCase());
        scope?.endIfUntouched();
      }),
    );
    for (const bad of ['', 'x', '0/', '/1', '123456789/0', "0/1'; DROP TABLE t", '0/1/2']) {
      const scope = openRequestScope(options, { headers: { cookie: `sl_lsn=${bad}`, 'x-sessionlocal-lsn': bad } });
      expect(scope?.session.options.minLsn).toBeUndefined();
      scope?.endIfUntouched();
    }
    // a read-write request carries no minLsn and gets read-your-writes on (its commit returns the position)
    const writer = openRequestScope({ ...options, readOnly: () => false }, { headers: { 'x-sessionlocal-lsn': '0/1' } });
    expect(writer?.session.options).toMatchObject({ minLsn: undefined, readOnly: false, readYourWrites: { maxWaitMs: 50 } });
    writer?.endIfUntouched();
  });

  it('statements that only read are not writes; anything else, and SELECTs that write, are', () => {
    for (const sql of ['SELECT 1', '  select * from t', 'SHOW work_mem', 'EXPLAIN SELECT 1', 'SAVEPOINT a', 'RELEASE SAVEPOINT a', 'ROLLBACK TO SAVEPOINT a']) expect(mayWrite(sql), sql).toBe(false);
    for (const sql of [
      'INSERT INTO t VALUES (1)',
      'UPDATE t SET a = 1',
      'DELETE FROM t',
      'WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x',
      "SELECT nextval('s')",
      'SELECT * FROM t FOR UPDATE',
      'SELECT 1 INTO t2',
      'CALL p()',
      '',
    ])
      expect(mayWrite(sql), sql).toBe(true);
  });

  it('bad adapter readYourWrites options are a ConfigError naming the field', () => {
    expect(() => openRequestScope({ factory: h.SessionLocal, readYourWrites: { cookie: 'bad name;' } }, { headers: {} })).toThrow(/readYourWrites.cookie/);
    expect(() => openRequestScope({ factory: h.SessionLocal, readYourWrites: { maxAgeSeconds: 0 } }, { headers: {} })).toThrow(/readYourWrites.maxAgeSeconds/);
  });
});

import { describe, expect, it, beforeAll } from 'vitest';
import { sqlState } from '../src/index.js';
import { useDatabase } from './support.js';

const h = useDatabase({ engine: { pool: { max: 4 } } });

beforeAll(async () => {
  await h.engine.autocommit(() => h.engine.sequelize.query('CREATE TABLE counter (id int PRIMARY KEY, v int NOT NULL); INSERT INTO counter VALUES (1, 0);'));
});

const read = async () => {
  const [rows] = (await h.engine.sequelize.query('SELECT v FROM counter WHERE id = 1')) as [Array<{ v: number }>, unknown];
  return rows[0]!.v;
};

describe('SessionLocal.begin(fn, { retry })', () => {
  it('re-runs the whole function after a serialization failure between two SERIALIZABLE sessions', async () => {
    await h.observer.query('UPDATE counter SET v = 0');
    let attempts = 0;
    const result = await h.SessionLocal.begin(
      async () => {
        attempts++;
        const seen = await read(); // takes the snapshot
        if (attempts === 1) {
          // another SERIALIZABLE session changes the same row and commits first
          await h.SessionLocal.begin(() => h.engine.sequelize.query('UPDATE counter SET v = v + 1 WHERE id = 1'), { isolationLevel: 'SERIALIZABLE' });
        }
        await h.engine.sequelize.query('UPDATE counter SET v = v + 10 WHERE id = 1');
        return seen;
      },
      { isolationLevel: 'SERIALIZABLE', retry: { attempts: 3, baseDelayMs: 1 } },
    );
    expect(attempts).toBe(2);
    expect(result).toBe(1);
    const { rows } = await h.observer.query('SELECT v FROM counter');
    expect(rows[0].v).toBe(11);
  });

  it('gives up after `attempts` and throws the serialization failure', async () => {
    await h.observer.query('UPDATE counter SET v = 0');
    let attempts = 0;
    const error = await h.SessionLocal.begin(
      async () => {
        attempts++;
        await read();
        await h.SessionLocal.begin(() => h.engine.sequelize.query('UPDATE counter SET v = v + 1 WHERE id = 1'));
        await h.engine.sequelize.query('UPDATE counter SET v = v + 10 WHERE id = 1');
      },
      { isolationLevel: 'SERIALIZABLE', retry: { attempts: 3, baseDelayMs: 1 } },
    ).catch((e: unknown) => e);
    expect(attempts).toBe(3);
    expect(sqlState(error)).toBe('40001');
    const { rows } = await h.observer.query('SELECT v FROM counter');
    expect(rows[0].v).toBe(3);
  });

  it('does not retry other errors', async () => {
    let attempts = 0;
    await expect(
      h.SessionLocal.begin(
        async () => {
          attempts++;
          await h.engine.sequelize.query('SELECT 1/0');
        },
        { retry: { attempts: 5 } },
      ),
    ).rejects.toThrow(/division by zero/);
    expect(attempts).toBe(1);
  });

  it('rejects a bad attempts value with a ConfigError', async () => {
    await expect(h.SessionLocal.begin(async () => 1, { retry: { attempts: 0 } })).rejects.toMatchObject({ code: 'CONFIG_INVALID', field: 'retry.attempts' });
  });
});

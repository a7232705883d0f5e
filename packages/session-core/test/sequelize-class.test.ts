import { DataTypes, Sequelize } from 'sequelize';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { ConfigError, createEngine, engineFromEnv, sessionmaker } from '../src/index.js';
import { backendPid, useDatabase } from './support.js';

/** A team's own Sequelize subclass: a helper every model file already uses. */
class AppSequelize extends Sequelize {
  tableNames(): string[] {
    return Object.values(this.models).map((model) => model.getTableName() as string);
  }
}

const h = useDatabase({ engine: { sequelizeClass: AppSequelize, pool: { max: 5, acquireTimeoutMs: 5000 } } });
const URL = 'postgres://app:s3cret@127.0.0.1:5432/app';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('sequelizeClass: the engine extends the class a team already uses', () => {
  it('engine.sequelize is an instance of the given class, with its methods, and typed as it', () => {
    expect(h.engine.sequelize).toBeInstanceOf(AppSequelize);
    expect(h.engine.sequelize).toBeInstanceOf(Sequelize);
    const engine = createEngine(h.db.url, { sequelizeClass: AppSequelize });
    engine.sequelize.define('Widget', { name: DataTypes.TEXT }, { tableName: 'widgets' });
    expect(engine.sequelize.tableNames()).toEqual(['widgets']); // typed: tableNames exists on Engine<AppSequelize>
    h.engines.push(engine);
  });

  it('engineFromEnv takes it as an override', async () => {
    const engine = engineFromEnv({ DATABASE_URL: h.db.url }, { sequelizeClass: AppSequelize });
    h.engines.push(engine);
    expect(engine.sequelize).toBeInstanceOf(AppSequelize);
    expectTypeOf(engine.sequelize).toEqualTypeOf<AppSequelize>();
    expectTypeOf(createEngine(URL).sequelize).toEqualTypeOf<Sequelize>();
  });

  it('models defined on it join the current session: one connection, commit and rollback', async () => {
    const Note = h.engine.sequelize.define('Note', { body: { type: DataTypes.TEXT, allowNull: false } }, { tableName: 'class_notes', timestamps: false });
    await h.engine.autocommit(() => Note.sync());
    const pids = await h.SessionLocal.begin(async () => {
      await Note.create({ body: 'kept' });
      return Promise.all([backendPid(h.engine), backendPid(h.engine), Note.count().then(() => backendPid(h.engine))]);
    });
    expect(new Set(pids).size).toBe(1);
    await expect(
      h.SessionLocal.begin(async () => {
        await Note.create({ body: 'dropped' });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    const { rows } = await h.observer.query('SELECT body FROM class_notes ORDER BY body');
    expect(rows.map((r) => r.body)).toEqual(['kept']);
  });

  it('two engines over the same class never see each other', async () => {
    const other = createEngine(h.db.url, { sequelizeClass: AppSequelize });
    h.engines.push(other);
    const OtherLocal = sessionmaker(other);
    await h.SessionLocal.begin(async (db) => {
      const mine = await backendPid(h.engine);
      const theirs = await OtherLocal.begin(async () => backendPid(other));
      expect(theirs).not.toBe(mine);
      expect(OtherLocal.currentOrUndefined()).toBeUndefined();
      expect(h.SessionLocal.current()).toBe(db);
    });
  });

  it('rejects a value that is not Sequelize or a subclass, naming the field', () => {
    for (const value of [class NotSequelize {}, () => undefined, 'Sequelize', 42, null]) {
      const error = configError(() => createEngine(URL, { sequelizeClass: value as never }));
      expect(error.message).toMatch(/^sequelizeClass: must be Sequelize or a subclass of it/);
    }
  });

  it('rejects a class from another copy of the sequelize package', () => {
    class CopySequelize {
      static useCLS() {}
      query() {}
    }
    const error = configError(() => createEngine(URL, { sequelizeClass: CopySequelize as never }));
    expect(error.message).toMatch(/^sequelizeClass: extends a different copy of the 'sequelize' package/);
  });

  it('refuses an existing instance, says why and gives the one-line change, without the password', () => {
    const existing = new Sequelize(URL, { dialect: 'postgres', logging: false });
    for (const options of [{ sequelizeClass: existing }, { sequelize: existing }]) {
      const error = configError(() => createEngine(URL, options as never));
      expect(error.message).toContain('an existing instance cannot be adopted');
      expect(error.message).toContain('createEngine(url, { sequelizeClass: Sequelize, sequelize: options }).sequelize');
      expect(error.message).not.toContain('s3cret');
    }
    return existing.close();
  });
});

import { EventEmitter } from 'node:events';
import { setImmediate as immediate } from 'node:timers/promises';
import { describe, expect, it, beforeAll } from 'vitest';
import { NoActiveSessionError, createEngine, sessionmaker, type Session } from '../src/index.js';
import { createTestDatabase } from '../src/testing/index.js';
import { backendPid, useDatabase } from './support.js';
import { defineModels, type Models } from './models.js';

const h = useDatabase({ engine: { pool: { max: 10, acquireTimeoutMs: 10_000 } } });
let m: Models;
beforeAll(async () => {
  m = await defineModels(h.engine);
});

describe('rule 3: implicit propagation', () => {
  it('current() is the session of the async context, and throws outside one', async () => {
    expect(() => h.SessionLocal.current()).toThrow(NoActiveSessionError);
    expect(h.SessionLocal.currentOrUndefined()).toBeUndefined();
    await h.SessionLocal.begin(async (db) => {
      expect(h.SessionLocal.current()).toBe(db);
      await new Promise((r) => setTimeout(r, 1));
      expect(h.SessionLocal.current()).toBe(db);
    });
  });

  it('200 concurrent scopes interleaving timers, immediates and emitters never see each other', async () => {
    const emitter = new EventEmitter();
    emitter.setMaxListeners(0);
    const mismatches: string[] = [];
    const check = (expected: Session, where: string) => {
      if (h.SessionLocal.currentOrUndefined() !== expected) mismatches.push(where);
    };
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        h.SessionLocal.begin(async (db) => {
          check(db, 'start');
          await new Promise((r) => setTimeout(r, i % 7));
          check(db, 'setTimeout');
          await immediate();
          check(db, 'setImmediate');
          await new Promise<void>((resolve) => {
            const onTick = () => {
              check(db, 'emitter');
              emitter.off(`tick-${i}`, onTick);
              resolve();
            };
            emitter.on(`tick-${i}`, onTick);
            setTimeout(() => emitter.emit(`tick-${i}`), i % 3);
          });
          if (i % 4 === 0) {
            const author = await m.Author.create({ name: `writer-${i}` });
            check(db, 'after query');
            const pid = await backendPid(h.engine);
            return { i, id: author.get('id') as number, pid, sid: db.id };
          }
          return { i, id: 0, pid: 0, sid: db.id };
        }),
      ),
    );
    expect(mismatches).toEqual([]);
    expect(new Set(results.map((r) => r.sid)).size).toBe(200);
    const writers = results.filter((r) => r.id !== 0);
    expect(writers).toHaveLength(50);
    expect(await m.Author.count()).toBe(50);
    await m.Author.destroy({ where: {} });
  });

  it('context set by one request does not leak into an emitter listener registered by another', async () => {
    const emitter = new EventEmitter();
    const seen: Array<number | undefined> = [];
    emitter.on('evt', () => seen.push(h.SessionLocal.currentOrUndefined()?.id));
    const a = h.SessionLocal();
    await a.run(async () => {
      emitter.emit('evt'); // synchronous emit runs in the emitter's caller context
    });
    emitter.emit('evt');
    await a.close();
    expect(seen).toEqual([a.id, undefined]);
  });

  it("stream callbacks run in the scope that piped them, never another request's", async () => {
    const { Readable, Transform } = await import('node:stream');
    const { pipeline } = await import('node:stream/promises');
    const leaks: string[] = [];
    await Promise.all(
      Array.from({ length: 20 }, () =>
        h.SessionLocal.begin(async (db) => {
          const source = Readable.from(Array.from({ length: 5 }, (_, i) => i));
          const check = new Transform({
            objectMode: true,
            transform(chunk, _enc, done) {
              if (h.SessionLocal.currentOrUndefined() !== db) leaks.push(`session ${db.id} saw another`);
              setTimeout(() => done(null, chunk), 1);
            },
          });
          const sink = new Transform({ objectMode: true, transform: (_c, _e, done) => done() });
          await pipeline(source, check, sink);
          await m.Author.count();
        }),
      ),
    );
    expect(leaks).toEqual([]);
  });

  it('run() nests: an inner session shadows the outer one and the outer comes back', async () => {
    const outer = h.SessionLocal();
    const inner = h.SessionLocal();
    await outer.run(async () => {
      const outerPid = await backendPid(h.engine);
      await inner.run(async () => {
        expect(h.SessionLocal.current()).toBe(inner);
        expect(await backendPid(h.engine)).not.toBe(outerPid);
      });
      expect(h.SessionLocal.current()).toBe(outer);
      expect(await backendPid(h.engine)).toBe(outerPid);
    });
    await Promise.all([outer.close(), inner.close()]);
  });
});

describe('two engines in one process', () => {
  it("never see each other's sessions or transactions", async () => {
    const otherDb = await createTestDatabase();
    const other = createEngine(otherDb.url, { pool: { max: 2 } });
    try {
      const OtherSession = sessionmaker(other);
      await other.autocommit(() => other.sequelize.query('CREATE TABLE marks (v text)'));
      await h.engine.autocommit(() => h.engine.sequelize.query('CREATE TABLE marks (v text)'));
      await h.SessionLocal.begin(async (db) => {
        await h.engine.sequelize.query("INSERT INTO marks VALUES ('main')");
        expect(OtherSession.currentOrUndefined()).toBeUndefined();
        await OtherSession.begin(async (odb) => {
          expect(OtherSession.current()).toBe(odb);
          expect(h.SessionLocal.current()).toBe(db);
          await other.sequelize.query("INSERT INTO marks VALUES ('other')");
          await h.engine.sequelize.query("INSERT INTO marks VALUES ('main again')");
          throw new Error('roll back the other engine only');
        }).catch(() => undefined);
      });
      const [mainRows] = (await h.engine.sequelize.query('SELECT v FROM marks ORDER BY v')) as [Array<{ v: string }>, unknown];
      const [otherRows] = (await other.sequelize.query('SELECT v FROM marks')) as [Array<{ v: string }>, unknown];
      expect(mainRows.map((r) => r.v)).toEqual(['main', 'main again']);
      expect(otherRows).toEqual([]);
      expect(other.stats().pool.inUse).toBe(0);
    } finally {
      await h.engine.autocommit(() => h.engine.sequelize.query('DROP TABLE IF EXISTS marks'));
      await other.dispose();
      await otherDb.drop();
    }
  });
});

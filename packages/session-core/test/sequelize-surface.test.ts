import { describe, expect, it, beforeAll } from 'vitest';
import { QueryTypes } from 'sequelize';
import { backendPid, useDatabase } from './support.js';
import { defineModels, type Models } from './models.js';

const h = useDatabase();
let m: Models;
beforeAll(async () => {
  m = await defineModels(h.engine);
});

describe('one connection, one transaction (rule 2)', () => {
  it('runs the whole Sequelize surface on one backend and rolls it all back together', async () => {
    const session = h.SessionLocal();
    const pids = await session.run(async () => {
      const seen: number[] = [await backendPid(h.engine)];
      const [author, created] = await m.Author.findOrCreate({ where: { name: 'Le Guin' } });
      expect(created).toBe(true);
      seen.push(await backendPid(h.engine));
      await m.Book.bulkCreate([
        { title: 'Earthsea', AuthorId: author.get('id') },
        { title: 'The Dispossessed', AuthorId: author.get('id') },
      ]);
      const book = await m.Book.create({ title: 'Lathe', AuthorId: author.get('id') });
      await book.update({ title: 'The Lathe of Heaven' });
      await book.increment('copies', { by: 3 });
      expect((await m.Book.findByPk(book.get('id') as number))?.get('copies')).toBe(3);
      const withBooks = await m.Author.findAll({ include: [m.Book] });
      expect((withBooks[0]?.get('Books') as unknown[]).length).toBe(3);
      await m.Book.destroy({ where: { title: 'Earthsea' } });
      const raw = await h.engine.sequelize.query('SELECT count(*)::int AS n FROM "Books"', { type: QueryTypes.SELECT });
      expect(raw).toEqual([{ n: 2 }]);
      seen.push(...(await Promise.all(Array.from({ length: 10 }, () => backendPid(h.engine)))));
      const [again, createdAgain] = await m.Author.findOrCreate({ where: { name: 'Le Guin' } });
      expect(createdAgain).toBe(false);
      expect(again.get('id')).toBe(author.get('id'));
      seen.push(await backendPid(h.engine));
      return seen;
    });
    expect(new Set(pids).size).toBe(1);
    expect(h.engine.stats().pool.inUse).toBe(1);
    await session.close();
    expect(await m.Author.count()).toBe(0);
    expect(await m.Book.count()).toBe(0);
  });

  it('runs findOrCreate as the very first statement inside the session transaction', async () => {
    const session = h.SessionLocal();
    await session.run(async () => {
      await m.Author.findOrCreate({ where: { name: 'first' } });
      const [rows] = (await h.engine.sequelize.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'")) as [Array<{ n: number }>, unknown];
      expect(rows[0]!.n).toBeGreaterThanOrEqual(1);
    });
    expect(h.engine.stats().pool.size).toBe(1);
    await session.rollback();
    await session.close();
    expect(await m.Author.count()).toBe(0);
  });

  it('queues concurrent statements of one session instead of overlapping them on the client', async () => {
    const session = h.SessionLocal();
    await session.begin();
    const client = session.heldConnection as unknown as { query: (...a: unknown[]) => unknown; _queryQueue: unknown[]; _activeQuery: unknown };
    const original = client.query;
    let maxBusy = 0;
    client.query = function (this: typeof client, ...args: unknown[]) {
      maxBusy = Math.max(maxBusy, client._queryQueue.length + (client._activeQuery ? 1 : 0));
      return original.apply(this, args);
    };
    try {
      await session.run(() => Promise.all(Array.from({ length: 20 }, (_, i) => m.Author.create({ name: `a${i}` }))));
      await session.commit();
    } finally {
      client.query = original;
      await session.close();
    }
    expect(maxBusy).toBe(0);
    expect(await m.Author.count()).toBe(20);
    await m.Author.destroy({ where: {} });
  });

  it('lets an explicit transaction option win over the current session', async () => {
    const other = await h.engine.sequelize.transaction();
    const session = h.SessionLocal();
    await session.run(async () => {
      await m.Author.create({ name: 'explicit' }, { transaction: other });
      await m.Author.create({ name: 'implicit' });
    });
    await other.commit();
    await session.rollback();
    await session.close();
    const names = (await m.Author.findAll()).map((a) => a.get('name'));
    expect(names).toEqual(['explicit']);
    await m.Author.destroy({ where: {} });
  });
});

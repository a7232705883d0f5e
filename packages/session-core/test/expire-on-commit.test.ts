import { describe, expect, it, beforeAll } from 'vitest';
import { InstanceExpiredError, sessionmaker } from '../src/index.js';
import { useDatabase } from './support.js';
import { defineModels, type Models } from './models.js';

const h = useDatabase();
let m: Models;
beforeAll(async () => {
  m = await defineModels(h.engine);
});

describe('rule 9: expireOnCommit', () => {
  it('true: instances loaded or saved through the session expire at commit; refresh reloads them', async () => {
    const Expiring = sessionmaker(h.engine, { expireOnCommit: true });
    const session = Expiring();
    await session.run(async () => {
      const created = await m.Author.create({ name: 'Ursula' });
      const loaded = (await m.Author.findOne({ where: { name: 'Ursula' } }))!;
      expect(loaded.get('name')).toBe('Ursula');
      await session.commit();
      const error = (() => {
        try {
          return created.get('name');
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(InstanceExpiredError);
      expect((error as InstanceExpiredError).model).toBe('Author');
      expect((error as InstanceExpiredError).attribute).toBe('name');
      expect((error as Error).message).toMatch(/Author\.name/);
      expect(() => (loaded as unknown as { name: string }).name).toThrow(InstanceExpiredError);
      await h.observer.query(`UPDATE "Authors" SET name = 'Ursula K. Le Guin'`);
      await session.refresh(loaded);
      expect(loaded.get('name')).toBe('Ursula K. Le Guin');
      await session.commit();
    });
    await session.close();
    await m.Author.destroy({ where: {} });
  });

  it('false (the default): values are kept after commit', async () => {
    const session = h.SessionLocal();
    const author = await session.run(async () => {
      const a = await m.Author.create({ name: 'kept' });
      await session.commit();
      return a;
    });
    await session.close();
    expect(author.get('name')).toBe('kept');
    expect((author as unknown as { name: string }).name).toBe('kept');
    await m.Author.destroy({ where: {} });
  });

  it('a per-session override turns expiry on, and a rollback expires nothing', async () => {
    const session = h.SessionLocal({ expireOnCommit: true });
    await session.run(async () => {
      const a = await m.Author.create({ name: 'rolled' });
      await session.rollback();
      expect(a.get('name')).toBe('rolled');
    });
    await session.close();
  });
});

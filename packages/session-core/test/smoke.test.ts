import { DataTypes } from 'sequelize';
import { describe, expect, it, beforeAll } from 'vitest';
import { useDatabase, backendPid } from './support.js';

const h = useDatabase();

describe('smoke', () => {
  let Item: any;
  beforeAll(async () => {
    Item = h.engine.sequelize.define('Item', { name: DataTypes.STRING }, { timestamps: false });
    await h.engine.sequelize.sync();
  });

  it('runs the whole surface on one backend and rolls back together', async () => {
    const session = h.SessionLocal();
    const pids = await session.run(async () => {
      const a = await backendPid(h.engine);
      await Item.create({ name: 'pen' });
      const [found, created] = await Item.findOrCreate({ where: { name: 'cup' } });
      expect(created).toBe(true);
      await Item.bulkCreate([{ name: 'a' }, { name: 'b' }]);
      const all = await Promise.all(Array.from({ length: 10 }, () => backendPid(h.engine)));
      await h.engine.sequelize.transaction(async () => {
        await Item.create({ name: 'inner' });
      });
      expect(await Item.count()).toBe(5);
      return [a, ...all, found.id];
    });
    expect(new Set(pids.slice(0, 11)).size).toBe(1);
    await session.close();
    expect(await Item.count()).toBe(0);
  });

  it('commits with begin()', async () => {
    await h.SessionLocal.begin(async () => {
      await Item.create({ name: 'kept' });
    });
    expect(await Item.count()).toBe(1);
    await Item.destroy({ where: {} });
  });
});

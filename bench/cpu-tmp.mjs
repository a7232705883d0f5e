// CPU time per request (user+system) of the data layer alone, sessionlocal vs hand-written sequelize.transaction.
import { createEngine, sessionmaker } from '@sessionlocal/session-core';
import { DataTypes, Sequelize } from 'sequelize';
import pg from 'pg';
const url = process.env.DATABASE_URL_BENCH;
const N = Number(process.argv[2] ?? 4000), C = 8;
const engine = createEngine(url, { pool: { max: 10 } });
const SL = sessionmaker(engine);
const SLD = sessionmaker(engine, { deferredReads: true, isolationLevel: 'READ COMMITTED' });
const def = (s) => s.define('CpuItem', { name: DataTypes.STRING, stock: DataTypes.INTEGER }, { tableName: 'cpu_items', timestamps: false });
const Item = def(engine.sequelize);
const plain = new Sequelize(url, { dialect: 'postgres', dialectModule: pg, logging: false, pool: { max: 10 } });
const PItem = def(plain);
await engine.autocommit(async () => { await Item.sync({ force: true }); await Item.bulkCreate(Array.from({ length: 100 }, (_, i) => ({ name: `i${i}`, stock: 1e9 }))); });
const variants = {
  manual: (i) => plain.transaction((t) => PItem.findByPk(1 + (i % 100), { transaction: t })),
  sessionlocal: (i) => SL.begin(() => Item.findByPk(1 + (i % 100))),
  deferred: (i) => SLD.begin(() => Item.findByPk(1 + (i % 100))),
  'manual-write': (i) => plain.transaction(async (t) => { const it = await PItem.findByPk(1 + (i % 100), { transaction: t, lock: true }); await it.decrement('stock', { transaction: t }); }),
  'sessionlocal-write': (i) => SL.begin(async () => { const it = await Item.findByPk(1 + (i % 100), { lock: true }); await it.decrement('stock'); }),
};
async function run(fn, n) {
  let next = 0;
  await Promise.all(Array.from({ length: C }, async () => { while (next < n) await fn(next++); }));
}
const only = process.argv[3]?.split(',');
for (const [name, fn] of Object.entries(variants)) if (!only || only.includes(name)) await run(fn, 500);
const out = {};
for (let round = 0; round < 3; round++) for (const [name, fn] of Object.entries(variants)) {
  if (only && !only.includes(name)) continue;
  const c0 = process.cpuUsage(); const t0 = performance.now();
  await run(fn, N);
  const c = process.cpuUsage(c0); const ms = performance.now() - t0;
  (out[name] ??= []).push({ cpuUs: (c.user + c.system) / N, wallUs: (ms * 1000) / N });
}
for (const [name, rs] of Object.entries(out)) {
  const med = (k) => rs.map((r) => r[k]).sort((a, b) => a - b)[1].toFixed(1);
  console.log(name.padEnd(20), 'cpu µs/op', med('cpuUs'), ' wall µs/op', med('wallUs'));
}
await engine.dispose(); await plain.close();

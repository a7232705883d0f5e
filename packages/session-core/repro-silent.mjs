import { createEngine, sessionmaker } from './dist/index.js';
import { startFaultProxy } from './dist/testing/index.js';
import { DataTypes } from 'sequelize';
const url = process.env.DATABASE_URL;
const proxy = await startFaultProxy({ port: 5432 });
const engine = createEngine(proxy.url(url), { pool: { max: 5, acquireTimeoutMs: 500 }, connectTimeoutMs: 1500, statementTimeoutMs: 1000, replyTimeoutMarginMs: 500, applicationName: 'repro' });
const SessionLocal = sessionmaker(engine);
const Order = engine.sequelize.define('ReproOrder', { qty: DataTypes.INTEGER });
const Payment = engine.sequelize.define('ReproPayment', { pid: DataTypes.STRING });
Order.hasOne(Payment, { as: 'payment', foreignKey: 'orderId' });
await engine.autocommit(() => engine.sequelize.sync({ force: true }));
await SessionLocal.begin(async () => { const o = await Order.create({ qty: 1 }); await Payment.create({ pid: 'x', orderId: o.id }); });
let phase = 'pass'; let passAt = 0; let silentAt = Infinity; const fails = {}; let ok = 0; let stop = false;
async function worker() {
  while (!stop) {
    const start = performance.now(); const startPhase = phase;
    try {
      await SessionLocal.begin(async () => {
        const r = Math.random();
        if (r < 0.2) await engine.sequelize.query('SELECT pg_sleep(0.05)');
        else await Order.findByPk(1, { include: [{ model: Payment, as: 'payment' }] });
      });
      ok++;
    } catch (e) {
      if (startPhase === 'pass' && start >= passAt && passAt > 0 && performance.now() < silentAt) {
        const name = e?.constructor?.name; const k = `${name}: ${e.message}`.slice(0, 200);
        if (!/PoolTimeout/.test(name)) { fails[k] = (fails[k] ?? 0) + 1; if (fails[k] === 1) console.log('FAIL', (start - passAt).toFixed(0), k, e.cause?.message ?? e.parent?.message ?? '', e.stack?.split('\n').slice(1,8).join('\n')); }
      }
    }
    await new Promise((r) => setTimeout(r, Math.random() * 10));
  }
}
const workers = Array.from({ length: Number(process.env.W ?? 4) }, worker);
const cycles = Number(process.env.CYCLES ?? 5);
for (let c = 0; c < cycles; c++) {
  await new Promise((r) => setTimeout(r, 1000 + Math.random() * 3000));
  phase = 'silent'; silentAt = performance.now(); proxy.silent();
  await new Promise((r) => setTimeout(r, Number(process.env.SILENT ?? 5000)));
  phase = 'pass'; passAt = performance.now(); silentAt = Infinity; proxy.pass();
  await new Promise((r) => setTimeout(r, 4000));
  console.log('cycle', c, 'ok', ok, JSON.stringify(fails), JSON.stringify(engine.stats().pool));
}
stop = true; await Promise.all(workers);
await engine.dispose({ timeoutMs: 2000 }); await proxy.close();

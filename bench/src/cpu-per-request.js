// CPU µs per request of an Express/Koa/Fastify server (sessionLocal + findByPk) in this process, loaded by autocannon in a child.
// usage: DATABASE_URL=… node bench/src/cpu-per-request.js [CHECKOUT] [express|koa|fastify] [items|ping] [sessionlocal|bare][+json]
// CHECKOUT (default: this one) is a built checkout of the repo, e.g. a worktree of an older commit:
// the same script measures both, so a before/after comparison runs the same load. Prints the
// server's CPU time (user + system) per request over 7 batches of 4000 requests (min, median).
import { fork } from 'node:child_process';
const here = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const [root = here, framework = 'express', route = 'items', mode = 'sessionlocal'] = process.argv.slice(2);
const bare = mode.startsWith('bare'); // the framework alone (no sessionLocal): `/ping` only
const json = mode.endsWith('+json'); // Express: express.json() after the adapter, as bench/src/server/express.js mounts it
if (process.argv[2] === 'load') {
  const { createRequire } = await import('node:module');
  const autocannon = createRequire(import.meta.url)('autocannon');
  process.on('message', async ({ url, amount }) => {
    const r = await autocannon({ url, connections: 16, amount });
    process.send({ done: r.requests.total, errors: r.errors + r.non2xx });
  });
} else {
  const { createRequire } = await import('node:module');
  const req = createRequire(root + '/packages/session-core/package.json');
  const core = await import(root + '/packages/session-core/dist/index.js');
  const { DataTypes } = req('sequelize');
  const engine = core.createEngine(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres', { pool: { max: 10 } });
  const Item = engine.sequelize.define('Item', { name: DataTypes.STRING }, { tableName: `cpu_items_${process.pid}`, timestamps: false });
  const run = (sql) => (engine.autocommit ? engine.autocommit(() => engine.sequelize.query(sql)) : engine.sequelize.query(sql));
  await run(`CREATE TABLE cpu_items_${process.pid} (id serial primary key, name text); INSERT INTO cpu_items_${process.pid}(id, name) VALUES (1, 'a')`);
  const factory = core.sessionmaker(engine);
  let port;
  if (framework === 'express') {
    const express = createRequire(root + '/packages/adapter-express/package.json')('express');
    const { sessionLocal } = await import(root + '/packages/adapter-express/dist/index.js');
    const app = express();
    if (!bare) app.use(sessionLocal({ factory }));
    if (json) app.use(express.json());
    app.get('/items/:id', async (q, s) => s.json(await Item.findByPk(q.params.id)));
    app.get('/ping', (q, s) => s.json({ pong: true }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    port = server.address().port;
  } else if (framework === 'fastify') {
    const Fastify = createRequire(root + '/packages/adapter-fastify/package.json')('fastify');
    const { fastifySessionLocal } = await import(root + '/packages/adapter-fastify/dist/index.js');
    const app = Fastify();
    if (!bare) await app.register(fastifySessionLocal, { factory });
    app.get('/items/:id', async (q) => Item.findByPk(q.params.id));
    app.get('/ping', async () => ({ pong: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = app.server.address().port;
  } else {
    const r = createRequire(root + '/packages/adapter-koa/package.json');
    const Koa = r('koa');
    const { sessionLocal } = await import(root + '/packages/adapter-koa/dist/index.js');
    const app = new Koa();
    if (!bare) app.use(sessionLocal({ factory }));
    app.use(async (ctx) => {
      if (ctx.path === '/ping') ctx.body = { pong: true };
      else ctx.body = await Item.findByPk(1);
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((res) => server.once('listening', res));
    port = server.address().port;
  }
  const url = `http://127.0.0.1:${port}/${route === 'ping' ? 'ping' : 'items/1'}`;
  const child = fork(new URL(import.meta.url), ['load']);
  const load = (amount) =>
    new Promise((res) => {
      child.once('message', res);
      child.send({ url, amount });
    });
  await load(3000);
  const per = [];
  for (let i = 0; i < 7; i++) {
    const c0 = process.cpuUsage();
    const { done, errors } = await load(4000);
    const c = process.cpuUsage(c0);
    if (errors) console.error('errors', errors);
    per.push((c.user + c.system) / done);
  }
  per.sort((a, b) => a - b);
  console.log(
    `${root} ${framework} ${route}${mode === 'sessionlocal' ? '' : ` (${mode})`} on Node ${process.versions.node}: CPU µs/request min ${per[0].toFixed(0)} median ${per[3].toFixed(0)} (7 batches of 4000)`,
  );
  child.kill();
  await run(`DROP TABLE cpu_items_${process.pid}`);
  process.exit(0);
}

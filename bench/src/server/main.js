// One benchmark server process: BENCH_FRAMEWORK × BENCH_VARIANT on 127.0.0.1, database at
// DATABASE_URL. A second listener (the control port, never loaded) reports hold times, request
// counts and memory, so the measured app carries no bench-only route.
// Prints `BENCH_READY {"port":…,"controlPort":…}` once listening; exits on SIGTERM/SIGINT or when
// the harness that spawned it goes away (IPC disconnect).
import { createServer } from 'node:http';
import { HoldRecorder } from './hold.js';
import { openVariant } from './variants.js';

const HOST = '127.0.0.1';
const framework = process.env.BENCH_FRAMEWORK;
const variant = process.env.BENCH_VARIANT;
const url = process.env.DATABASE_URL;
if (!framework || !variant || !url) {
  console.error('usage: BENCH_FRAMEWORK=express|koa|fastify BENCH_VARIANT=… DATABASE_URL=… node src/server/main.js');
  process.exit(2);
}

const recorder = new HoldRecorder();
const layer = await openVariant(variant, url, recorder);
const builders = {
  express: async () => (await import('./express.js')).createExpressServer(variant, layer),
  koa: async () => (await import('./koa.js')).createKoaServer(variant, layer),
  fastify: async () => (await import('./fastify.js')).createFastifyServer(variant, layer, { url, recorder }),
};
if (!builders[framework]) {
  console.error(`unknown framework ${framework}`);
  process.exit(2);
}
const app = await builders[framework]();
let requests = 0;
app.server.on('request', () => {
  requests++;
});

const control = createServer((req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  let body;
  if (path === '/stats') {
    body = { requests, hold: recorder.snapshot(), memory: process.memoryUsage() };
  } else if (path === '/reset') {
    recorder.reset();
    body = { ok: true };
  } else if (path === '/memory') {
    // after a full collection, so what is left is what the server keeps
    if (typeof globalThis.gc === 'function') {
      globalThis.gc();
      globalThis.gc();
    }
    body = { requests, gc: typeof globalThis.gc === 'function', memory: process.memoryUsage() };
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
});

const port = await app.listen(HOST);
const controlPort = await new Promise((resolve) => control.listen(0, HOST, () => resolve(control.address().port)));
console.log(`BENCH_READY ${JSON.stringify({ port, controlPort, pid: process.pid, node: process.version, notes: layer.notes ?? [] })}`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  const force = setTimeout(() => process.exit(0), 3000);
  force.unref();
  app.server.closeAllConnections?.();
  control.closeAllConnections?.();
  await Promise.allSettled([new Promise((resolve) => app.server.close(resolve)), new Promise((resolve) => control.close(resolve)), layer.close()]);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.on('disconnect', stop);

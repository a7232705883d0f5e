// The floor that AsyncLocalStorage sets for `/ping` on this Node version: a bare Fastify app
// against the same app whose only addition is an onRequest hook entering an AsyncLocalStorage
// (no session, no database). Usage: node bench/src/als-floor.js  (3 rounds x 4 s, medians)
import { fork } from 'node:child_process';
import { AsyncLocalStorage } from 'node:async_hooks';
import autocannon from 'autocannon';
import Fastify from 'fastify';

if (process.argv[2] === 'serve') {
  const app = Fastify();
  if (process.argv[3] === 'als') {
    const storage = new AsyncLocalStorage();
    app.addHook('onRequest', (request, _reply, next) => storage.run({ request }, next));
  }
  app.get('/ping', async () => ({ pong: true }));
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  process.send({ address });
} else {
  const results = { bare: [], als: [] };
  for (let round = 0; round < 3; round++) {
    for (const mode of ['bare', 'als']) {
      const child = fork(new URL(import.meta.url), ['serve', mode]);
      const { address } = await new Promise((resolve) => child.once('message', resolve));
      await autocannon({ url: `${address}/ping`, connections: 32, duration: 1 });
      const { requests } = await autocannon({ url: `${address}/ping`, connections: 32, duration: 4 });
      results[mode].push(requests.average);
      child.kill();
    }
  }
  const median = (values) => [...values].sort((a, b) => a - b)[1];
  console.log(`bare ${results.bare.join(', ')} req/s; als ${results.als.join(', ')} req/s`);
  console.log(`AsyncLocalStorage only / bare (medians): ${(median(results.als) / median(results.bare)).toFixed(2)}x on Node ${process.version}`);
}

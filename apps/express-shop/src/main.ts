import { createServer } from 'node:http';
import { closeHttpServer, listenHttpServer, runShop } from '@sessionlocal/shop-domain';
import { createApp } from './app.js';

await runShop('express-shop', async (runtime) => {
  const server = createServer(createApp(runtime));
  const port = await listenHttpServer(server, runtime.config.port, runtime.config.host);
  return { port, close: () => closeHttpServer(server) };
});

import { closeHttpServer, runShop } from '@sessionlocal/shop-domain';
import { createApp } from './app.js';

await runShop('fastify-shop', async (runtime) => {
  const app = await createApp(runtime);
  await app.listen({ port: runtime.config.port, host: runtime.config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : runtime.config.port;
  return { port, close: () => closeHttpServer(app.server, () => app.close()) };
});

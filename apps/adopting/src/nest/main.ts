import 'reflect-metadata';
import { createDatabase } from '../sequelize-typescript/database.js';
import { createExpressApp, createFastifyApp } from './app.js';

// The runnable example: `pnpm --filter @sessionlocal/adopting build && node apps/adopting/dist/nest/main.js fastify`
const platform = process.argv[2] === 'fastify' ? 'fastify' : 'express';
const { engine, SessionLocal } = createDatabase(process.env.DATABASE_URL!);
await engine.sequelize.sync();
const app = platform === 'fastify' ? await createFastifyApp(SessionLocal) : await createExpressApp(SessionLocal);
app.enableShutdownHooks(); // SIGTERM -> app.close() -> SessionLocalModule disposes the engine
await app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');
console.log(`Nest on ${platform}: ${await app.getUrl()}`);

import { type DynamicModule, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter, type NestExpressApplication } from '@nestjs/platform-express';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { sessionLocal } from '@sessionlocal/adapter-express';
import { fastifySessionLocal } from '@sessionlocal/adapter-fastify';
import type { SessionFactory } from '@sessionlocal/session-core';
import { LibraryModule } from './library.js';
import { SessionLocalModule } from './session-local.module.js';

@Module({})
export class AppModule {}

/** The root module: the engine's factory in DI, then the feature modules. */
export function appModule(SessionLocal: SessionFactory): DynamicModule {
  return { module: AppModule, imports: [SessionLocalModule.forRoot(SessionLocal), LibraryModule] };
}

/** The Nest app on the Express platform: the Express adapter is plain middleware, mounted before Nest's routes. */
export async function createExpressApp(SessionLocal: SessionFactory): Promise<NestExpressApplication> {
  const app = await NestFactory.create<NestExpressApplication>(appModule(SessionLocal), new ExpressAdapter(), { logger: false });
  app.use(sessionLocal({ factory: SessionLocal }));
  return app;
}

/** The Nest app on the Fastify platform: the Fastify adapter is a plugin, registered on Nest's Fastify instance. */
export async function createFastifyApp(SessionLocal: SessionFactory): Promise<NestFastifyApplication> {
  const app = await NestFactory.create<NestFastifyApplication>(appModule(SessionLocal), new FastifyAdapter(), { logger: false });
  await app.register(fastifySessionLocal, { factory: SessionLocal });
  return app;
}

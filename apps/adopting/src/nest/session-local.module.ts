import { createParamDecorator, type DynamicModule, type ExecutionContext, Global, Inject, Module, type OnApplicationShutdown } from '@nestjs/common';
import type { Session, SessionFactory } from '@sessionlocal/session-core';
import { Sequelize } from 'sequelize-typescript';

/** The DI token of the `SessionLocal` factory: `@Inject(SESSION_LOCAL) SessionLocal: SessionFactory`. */
export const SESSION_LOCAL = Symbol('SessionLocal');

/**
 * The smallest module that points Nest at an engine, in place of `SequelizeModule.forRoot(...)`
 * (which always makes its own `new Sequelize(options)`: it cannot take an engine's instance).
 * It provides the factory, and the engine's Sequelize under @nestjs/sequelize's connection token
 * (the sequelize-typescript `Sequelize` class), so `SequelizeModule.forFeature([...])`,
 * `@InjectModel(Model)` and `@InjectConnection()` keep working unchanged. Disposes the engine on shutdown.
 * @example
 * @Module({ imports: [SessionLocalModule.forRoot(SessionLocal), SequelizeModule.forFeature([Author])] })
 */
@Global()
@Module({})
export class SessionLocalModule implements OnApplicationShutdown {
  static forRoot(SessionLocal: SessionFactory): DynamicModule {
    const providers = [
      { provide: SESSION_LOCAL, useValue: SessionLocal },
      { provide: Sequelize, useValue: SessionLocal.engine.sequelize },
    ];
    return { module: SessionLocalModule, providers, exports: providers };
  }

  constructor(@Inject(SESSION_LOCAL) private readonly SessionLocal: SessionFactory) {}

  /** Nest calls it on `app.close()` (and on signals with `enableShutdownHooks()`). */
  onApplicationShutdown(): Promise<void> {
    return this.SessionLocal.engine.dispose();
  }
}

/** The request's session as a handler parameter: `req.db` (Express platform) or `request.db` (Fastify platform). */
export const Db = createParamDecorator((_data: unknown, context: ExecutionContext): Session => context.switchToHttp().getRequest().db);

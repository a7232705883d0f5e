import { createEngine, sessionmaker, type EngineOptions } from '@sessionlocal/session-core';
import { Sequelize } from 'sequelize-typescript';
import { models } from './models.js';

/**
 * The sequelize-typescript app's database module after adopting sessionlocal. Before:
 *   export const sequelize = new Sequelize(url, { dialect: 'postgres', models });
 * After: the same options, with the engine making the instance (pool, pg client, logging).
 */
export function createDatabase(url: string, options: EngineOptions<Sequelize> = {}) {
  const engine = createEngine(url, { ...options, sequelizeClass: Sequelize, sequelize: { models, ...options.sequelize } });
  const SessionLocal = sessionmaker(engine);
  return { engine, sequelize: engine.sequelize, SessionLocal };
}

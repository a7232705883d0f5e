import { createEngine, sessionmaker } from '@sessionlocal/session-core';
import { Sequelize } from 'sequelize';

/**
 * The app-wide instance every model file imports. Before adopting sessionlocal:
 *   export const sequelize = new Sequelize(process.env.DATABASE_URL!, { logging: false, define: { underscored: true } });
 * After (the one changed line; the options move under `sequelize`):
 */
export const engine = createEngine(process.env.DATABASE_URL!, { sequelizeClass: Sequelize, sequelize: { define: { underscored: true } } });
export const sequelize = engine.sequelize;
export const SessionLocal = sessionmaker(engine);

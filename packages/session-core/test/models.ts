import { DataTypes, type Model, type ModelStatic } from 'sequelize';
import type { Engine } from '../src/index.js';

export interface Models {
  Author: ModelStatic<Model<any, any>>;
  Book: ModelStatic<Model<any, any>>;
}

/** Two associated models and their tables on the engine's database. */
export async function defineModels(engine: Engine): Promise<Models> {
  const { sequelize } = engine;
  const Author = sequelize.define('Author', { name: { type: DataTypes.STRING, allowNull: false, unique: true } }, { timestamps: false });
  const Book = sequelize.define('Book', { title: DataTypes.STRING, copies: { type: DataTypes.INTEGER, defaultValue: 0 } }, { timestamps: false });
  Author.hasMany(Book);
  Book.belongsTo(Author);
  await engine.autocommit(() => sequelize.sync({ force: true }));
  return { Author, Book };
}

import { DataTypes, Model } from 'sequelize';
import { sequelize } from './db.js';

/** Model files as they were: `Model.init(..., { sequelize })` against the app-wide instance. */
export class Order extends Model {
  declare id: number;
  declare customer: string;
  declare lines?: OrderLine[];
}
Order.init({ customer: { type: DataTypes.TEXT, allowNull: false } }, { sequelize, tableName: 'orders' });

export class OrderLine extends Model {
  declare id: number;
  declare sku: string;
  declare quantity: number;
  declare orderId: number;
}
OrderLine.init(
  {
    sku: { type: DataTypes.TEXT, allowNull: false },
    quantity: { type: DataTypes.INTEGER, allowNull: false, validate: { min: 1 } },
  },
  { sequelize, tableName: 'order_lines' },
);

Order.hasMany(OrderLine, { as: 'lines', foreignKey: 'orderId' });
OrderLine.belongsTo(Order, { foreignKey: 'orderId' });

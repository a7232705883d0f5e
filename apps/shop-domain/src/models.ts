import { DataTypes, type CreationOptional, type InferAttributes, type InferCreationAttributes, type Model, type ModelStatic, type NonAttribute, type Sequelize } from 'sequelize';

export interface Item extends Model<InferAttributes<Item>, InferCreationAttributes<Item>> {
  id: CreationOptional<number>;
  name: string;
  priceCents: number;
  stock: number;
}

export interface Payment extends Model<InferAttributes<Payment>, InferCreationAttributes<Payment>> {
  id: CreationOptional<number>;
  orderId: number;
  paymentId: string;
  amountCents: number;
}

export interface Order extends Model<InferAttributes<Order, { omit: 'payment' }>, InferCreationAttributes<Order, { omit: 'payment' }>> {
  id: CreationOptional<number>;
  itemId: number;
  quantity: number;
  totalCents: number;
  status: 'pending' | 'paid';
  payment?: NonAttribute<Payment>;
}

export interface ShopModels {
  Item: ModelStatic<Item>;
  Order: ModelStatic<Order>;
  Payment: ModelStatic<Payment>;
}

/** A `bigint` column read back as a number (pg returns int8 as a string). */
function bigintAsNumber(field: string) {
  return {
    type: DataTypes.BIGINT,
    allowNull: false,
    get(this: Model): number {
      return Number(this.getDataValue(field));
    },
  };
}

/**
 * Define the shop's models on an engine (`engine.sequelize`): queries made through them join the
 * request's session. The tables come from the migrations, never from `sync()`.
 */
export function defineModels(sequelize: Sequelize): ShopModels {
  const common = { underscored: true, timestamps: true };
  const Item = sequelize.define<Item>(
    'Item',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      name: { type: DataTypes.STRING(200), allowNull: false },
      priceCents: { type: DataTypes.INTEGER, allowNull: false },
      stock: { type: DataTypes.INTEGER, allowNull: false },
    },
    { ...common, tableName: 'items' },
  );
  const Order = sequelize.define<Order>(
    'Order',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      itemId: { type: DataTypes.INTEGER, allowNull: false },
      quantity: { type: DataTypes.INTEGER, allowNull: false },
      totalCents: bigintAsNumber('totalCents'),
      status: { type: DataTypes.STRING(20), allowNull: false },
    },
    { ...common, tableName: 'orders' },
  );
  const Payment = sequelize.define<Payment>(
    'Payment',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      orderId: { type: DataTypes.INTEGER, allowNull: false },
      paymentId: { type: DataTypes.STRING(64), allowNull: false },
      amountCents: bigintAsNumber('amountCents'),
    },
    { ...common, tableName: 'payments' },
  );
  Order.belongsTo(Item, { foreignKey: 'itemId', as: 'item' });
  Order.hasOne(Payment, { foreignKey: 'orderId', as: 'payment' });
  Payment.belongsTo(Order, { foreignKey: 'orderId', as: 'order' });
  return { Item, Order, Payment };
}

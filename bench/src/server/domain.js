// The benchmark's two database use cases, written once per data-access style so every variant
// runs the same statements: Sequelize (models from @sessionlocal/shop-domain) and plain `pg`.
import { randomUUID } from 'node:crypto';
import { PoolTimeoutError } from '@sessionlocal/session-core';
import { ConnectionAcquireTimeoutError, DataTypes, QueryTypes } from 'sequelize';

/** A response the handler chose (404, 409, 400): not a failure of the variant. */
export class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const TAKE_STOCK_SQL = 'UPDATE items SET stock = stock - $1, updated_at = now() WHERE id = $2 AND stock >= $1 RETURNING price_cents AS "priceCents"';

/** `GET /items/:id` parameter. */
export function parseId(raw) {
  const id = Number(raw);
  if (!Number.isInteger(id) || id < 1) throw new HttpError(400, 'invalid_request', 'id must be a positive integer');
  return id;
}

/** `POST /orders` body. */
export function parseOrder(body) {
  const itemId = Number(body?.itemId);
  const quantity = Number(body?.quantity);
  if (!Number.isInteger(itemId) || itemId < 1 || !Number.isInteger(quantity) || quantity < 1 || quantity > 1000) {
    throw new HttpError(400, 'invalid_request', 'itemId and quantity (1-1000) must be integers');
  }
  return { itemId, quantity };
}

/** `GET /rls/items/:id` tenant: the `x-tenant-id` header, a positive integer (sent as the `app.tenant_id` setting). */
export function parseTenant(raw) {
  if (typeof raw !== 'string' || !/^[1-9][0-9]{0,8}$/.test(raw)) throw new HttpError(400, 'invalid_request', 'x-tenant-id must be a positive integer');
  return raw;
}

/** The RLS route's model: `tenant_items` (see database.js), the columns of `items` plus `tenantId`. */
export function defineTenantItem(sequelize) {
  return sequelize.define(
    'TenantItem',
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      tenantId: { type: DataTypes.INTEGER, allowNull: false },
      name: { type: DataTypes.STRING(200), allowNull: false },
      priceCents: { type: DataTypes.INTEGER, allowNull: false },
      stock: { type: DataTypes.INTEGER, allowNull: false },
    },
    { underscored: true, timestamps: true, tableName: 'tenant_items' },
  );
}

/** What the hand-written variants send to scope a transaction to a tenant (sessionlocal sends the same from `settings`). */
export const SET_TENANT_SQL = "SELECT set_config('app.tenant_id', $1, true)";

const paymentId = () => `pay_${randomUUID().replaceAll('-', '')}`;

/**
 * Sequelize use cases. `transaction` is passed by hand (`sequelize-manual`) or left `undefined`
 * so the query joins the ambient transaction (`sequelize-cls`, `sessionlocal`).
 */
export function sequelizeUseCases(sequelize, { Item, Order, Payment }) {
  const TenantItem = defineTenantItem(sequelize);
  return {
    async getItem(id, transaction) {
      const item = await Item.findByPk(id, { transaction });
      if (!item) throw new HttpError(404, 'not_found', `Item ${id} not found`);
      return { id: item.id, name: item.name, priceCents: item.priceCents, stock: item.stock };
    },
    /**
     * `GET /rls/items/:id`: the row-level-security policy decides what the tenant sees. `tenant`
     * given: `set_config` first, by hand, in the same transaction (`sequelize-manual`,
     * `sequelize-cls`); `undefined`: the session already carries it (`sessionlocal`'s `settings`).
     */
    async getTenantItem(id, tenant, transaction) {
      if (tenant !== undefined) await sequelize.query(SET_TENANT_SQL, { bind: [tenant], type: QueryTypes.SELECT, transaction });
      const item = await TenantItem.findByPk(id, { transaction });
      if (!item) throw new HttpError(404, 'not_found', `Item ${id} not found`);
      return { id: item.id, tenantId: item.tenantId, name: item.name, priceCents: item.priceCents, stock: item.stock };
    },
    /** Three writes: conditional stock decrement, order insert, payment insert. */
    async purchase({ itemId, quantity }, transaction) {
      const rows = await sequelize.query(TAKE_STOCK_SQL, { bind: [quantity, itemId], type: QueryTypes.SELECT, transaction });
      const row = rows[0];
      if (!row) throw new HttpError(409, 'insufficient_stock', `Item ${itemId}: unknown or out of stock`);
      const totalCents = row.priceCents * quantity;
      const order = await Order.create({ itemId, quantity, totalCents, status: 'paid' }, { transaction });
      const payment = await Payment.create({ orderId: order.id, paymentId: paymentId(), amountCents: totalCents }, { transaction });
      return { id: order.id, itemId, quantity, totalCents, status: 'paid', paymentId: payment.paymentId };
    },
  };
}

/** The same use cases on a `pg` client that is already inside a transaction. */
export const pgUseCases = {
  async getItem(client, id) {
    const { rows } = await client.query('SELECT id, name, price_cents AS "priceCents", stock FROM items WHERE id = $1', [id]);
    if (!rows[0]) throw new HttpError(404, 'not_found', `Item ${id} not found`);
    return rows[0];
  },
  async getTenantItem(client, id, tenant) {
    await client.query(SET_TENANT_SQL, [tenant]);
    const { rows } = await client.query('SELECT id, tenant_id AS "tenantId", name, price_cents AS "priceCents", stock FROM tenant_items WHERE id = $1', [id]);
    if (!rows[0]) throw new HttpError(404, 'not_found', `Item ${id} not found`);
    return rows[0];
  },
  async purchase(client, { itemId, quantity }) {
    const taken = await client.query(TAKE_STOCK_SQL, [quantity, itemId]);
    const row = taken.rows[0];
    if (!row) throw new HttpError(409, 'insufficient_stock', `Item ${itemId}: unknown or out of stock`);
    const totalCents = row.priceCents * quantity;
    const order = await client.query("INSERT INTO orders (item_id, quantity, total_cents, status, created_at, updated_at) VALUES ($1, $2, $3, 'paid', now(), now()) RETURNING id", [
      itemId,
      quantity,
      totalCents,
    ]);
    const orderId = order.rows[0].id;
    const pay = paymentId();
    await client.query('INSERT INTO payments (order_id, payment_id, amount_cents, created_at, updated_at) VALUES ($1, $2, $3, now(), now()) RETURNING id', [orderId, pay, totalCents]);
    return { id: orderId, itemId, quantity, totalCents, status: 'paid', paymentId: pay };
  },
};

/** `raw-pg`: acquire, BEGIN, run, COMMIT (ROLLBACK on throw), release: by hand, per request. */
export async function inPgTransaction(pool, fn) {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw error;
  } finally {
    client.release(broken);
  }
}

// Unexpected errors are counted by the client (500s); BENCH_DEBUG=1 also prints the first few.
const debug = process.env.BENCH_DEBUG === '1';
let logged = 0;

/** Status, headers and body for an error: chosen responses keep theirs, pool timeouts are 503, the rest 500. */
export function errorResponse(error) {
  if (error instanceof HttpError) return { status: error.status, headers: {}, body: { error: error.code, message: error.message } };
  if (isPoolTimeout(error)) return { status: 503, headers: { 'retry-after': '1' }, body: { error: 'database_busy', message: 'The database is busy; retry shortly.' } };
  if (debug && logged++ < 5) console.error('[bench server] unexpected error:', error);
  return { status: 500, headers: {}, body: { error: 'internal_error', message: 'Internal server error.' } };
}

function isPoolTimeout(error) {
  for (let e = error, depth = 0; e && depth < 5; e = e.cause, depth++) {
    if (e instanceof PoolTimeoutError || e instanceof ConnectionAcquireTimeoutError) return true;
    if (typeof e.message === 'string' && e.message.includes('timeout exceeded when trying to connect')) return true;
  }
  return false;
}

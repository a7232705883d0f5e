import type { Engine, EngineStats, SessionFactory } from '@sessionlocal/session-core';
import { QueryTypes } from 'sequelize';
import { ShopError } from './errors.js';
import type { Item, Order, ShopModels } from './models.js';
import { FakePaymentGateway } from './payment-gateway.js';
import { Receipts } from './receipts.js';
import { parseFailAt, parseId, parseNewItem, parseNewOrder, parseSleepMs, type FailPoint } from './validation.js';

export interface ItemView {
  id: number;
  name: string;
  priceCents: number;
  stock: number;
}

export interface OrderView {
  id: number;
  itemId: number;
  quantity: number;
  totalCents: number;
  status: 'paid' | 'pending';
  paymentId: string | null;
}

export interface ShopOptions {
  engine: Engine;
  SessionLocal: SessionFactory;
  models: ShopModels;
  /** Honour `x-fail-at` (SHOP_FAULTS=1). */
  faults?: boolean;
  receipts?: Receipts;
  gateway?: FakePaymentGateway;
}

/** Thrown at an `x-fail-at` point: the handler fails, the adapter rolls back, the client gets 500. */
export class InjectedFault extends Error {
  constructor(readonly point: FailPoint) {
    super(`injected fault at ${point}`);
    this.name = 'InjectedFault';
  }
}

/**
 * The shop's use cases, one per route. Every method takes the raw request input (body, path
 * parameter, header), validates it, and runs its queries in the current request session: no
 * method opens, commits or closes anything, the adapter does that around the request.
 */
export class Shop {
  readonly engine: Engine;
  readonly SessionLocal: SessionFactory;
  readonly models: ShopModels;
  readonly receipts: Receipts;
  readonly faults: boolean;
  private readonly gateway: FakePaymentGateway;

  constructor(options: ShopOptions) {
    this.engine = options.engine;
    this.SessionLocal = options.SessionLocal;
    this.models = options.models;
    this.faults = options.faults ?? false;
    this.receipts = options.receipts ?? new Receipts();
    this.gateway = options.gateway ?? new FakePaymentGateway();
    // A COMMIT whose reply never came runs no hook: its order may exist without a receipt. Say which.
    this.SessionLocal.on('error', (event) => {
      if (event.phase !== 'commit') {
        process.emitWarning(`shop: an ${event.phase} hook failed: ${event.error instanceof Error ? event.error.message : String(event.error)}`);
        return;
      }
      const orderId = this.ordering.get(event.sessionId);
      if (orderId !== undefined) this.receipts.inDoubt(orderId);
      this.ordering.delete(event.sessionId);
    });
  }

  /** Session id -> order id of orders placed and not yet committed or rolled back. */
  private readonly ordering = new Map<number, number>();

  /** `GET /ping`: no database. */
  ping(): { pong: true } {
    return { pong: true };
  }

  /** `GET /health`: one round trip in the request session. */
  async health(): Promise<{ status: 'ok' }> {
    await this.engine.sequelize.query('SELECT 1', { type: QueryTypes.SELECT });
    return { status: 'ok' };
  }

  /** `POST /items` -> 201. */
  async createItem(body: unknown): Promise<ItemView> {
    const input = parseNewItem(body);
    return itemView(await this.models.Item.create(input));
  }

  /** `GET /items`, ordered by id. */
  async listItems(): Promise<{ items: ItemView[] }> {
    const items = await this.models.Item.findAll({ order: [['id', 'ASC']] });
    return { items: items.map(itemView) };
  }

  /** `GET /items/:id`. */
  async getItem(rawId: unknown): Promise<ItemView> {
    const id = parseId(rawId);
    const item = await this.models.Item.findByPk(id);
    if (!item) throw ShopError.notFound('Item', id);
    return itemView(item);
  }

  /**
   * `POST /orders` -> 201. Stock decrement, order row and payment row in the request's one
   * transaction. The conditional UPDATE is the oversell guard: PostgreSQL row-locks the item,
   * so concurrent orders queue on it and re-check `stock >= quantity` before decrementing.
   */
  async placeOrder(body: unknown, failAtHeader?: unknown): Promise<OrderView> {
    const { itemId, quantity } = parseNewOrder(body);
    const failAt = parseFailAt(failAtHeader, this.faults);
    const { Item, Order, Payment } = this.models;
    const session = this.SessionLocal.current();

    const taken = await this.engine.sequelize.query<{ priceCents: number }>(
      'UPDATE items SET stock = stock - $1, updated_at = now() WHERE id = $2 AND stock >= $1 RETURNING price_cents AS "priceCents"',
      { bind: [quantity, itemId], type: QueryTypes.SELECT },
    );
    const row = taken[0];
    if (!row) {
      const item = await Item.findByPk(itemId);
      if (!item) throw ShopError.notFound('Item', itemId);
      throw ShopError.insufficientStock(itemId, quantity, item.stock);
    }
    if (failAt === 'after-stock') throw new InjectedFault(failAt);

    const totalCents = row.priceCents * quantity;
    const order = await Order.create({ itemId, quantity, totalCents, status: 'pending' });
    if (failAt === 'after-order') throw new InjectedFault(failAt);

    const paymentId = await this.gateway.charge(order.id, totalCents);
    // x-fail-at: commit charges one cent too much: the deferred payment_matches_order check fails at COMMIT only.
    const amountCents = failAt === 'commit' ? totalCents + 1 : totalCents;
    await Payment.create({ orderId: order.id, paymentId, amountCents });
    if (failAt === 'after-payment') throw new InjectedFault(failAt);

    await order.update({ status: 'paid' });
    this.ordering.set(session.id, order.id);
    session.afterCommit(() => {
      this.ordering.delete(session.id);
      this.receipts.add(order.id);
    });
    session.afterRollback(() => this.ordering.delete(session.id));
    return orderView(order, paymentId);
  }

  /** `GET /orders/:id`. */
  async getOrder(rawId: unknown): Promise<OrderView> {
    const id = parseId(rawId);
    const order = await this.models.Order.findByPk(id, { include: [{ model: this.models.Payment, as: 'payment' }] });
    if (!order) throw ShopError.notFound('Order', id);
    return orderView(order, order.payment?.paymentId ?? null);
  }

  /**
   * `GET /receipts`: orders whose afterCommit hook ran in this process; `inDoubt` (only when there
   * are some): orders whose COMMIT outcome is unknown, so no hook ran; they may or may not exist.
   */
  listReceipts(): { orderIds: number[]; inDoubt?: number[] } {
    const inDoubt = this.receipts.listInDoubt();
    return inDoubt.length > 0 ? { orderIds: this.receipts.list(), inDoubt } : { orderIds: this.receipts.list() };
  }

  /** `GET /sleep?ms=N`: hold the session's connection for N ms. */
  async sleep(rawMs: unknown): Promise<{ slept: number }> {
    const ms = parseSleepMs(rawMs);
    await this.engine.sequelize.query('SELECT pg_sleep($1)', { bind: [ms / 1000], type: QueryTypes.SELECT });
    return { slept: ms };
  }

  /** `GET /stats`. */
  stats(): EngineStats {
    return this.engine.stats();
  }
}

function itemView(item: Item): ItemView {
  return { id: item.id, name: item.name, priceCents: item.priceCents, stock: item.stock };
}

function orderView(order: Order, paymentId: string | null): OrderView {
  return { id: order.id, itemId: order.itemId, quantity: order.quantity, totalCents: order.totalCents, status: order.status, paymentId };
}

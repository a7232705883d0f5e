import type pg from 'pg';
import type { AppLoad, Purchase } from './load.js';

/** One invariant's verdict, with the numbers behind it. */
export interface Verdict {
  app: string;
  name: string;
  pass: boolean;
  detail: string;
  examples?: unknown[];
}

interface OrderRow {
  id: number;
  item_id: number;
  quantity: number;
  status: string;
  payments: number;
  matching: number;
}

/** Outcome counts of the purchases, for the report. */
export interface PurchaseOutcomes {
  created: number;
  refused: number;
  abortedCommitted: number;
  abortedNothing: number;
  abortedAfterResponse: number;
  /** 500 `commit_outcome_unknown` (the COMMIT's reply never came): committed whole or left nothing. */
  outcomeUnknownCommitted: number;
  outcomeUnknownNothing: number;
}

/** The documented exception: a COMMIT whose reply never came answers 500 `commit_outcome_unknown`. */
export function outcomeUnknown(p: Purchase): boolean {
  return p.result.status === 500 && (p.result.body as { error?: unknown } | undefined)?.error === 'commit_outcome_unknown';
}

/**
 * The database invariants for one app: the ledger of its items, order <-> payment one-to-one,
 * per-purchase attribution (201 has its row, 4xx/5xx left none, an aborted purchase committed
 * whole or left nothing), and `/receipts` == its committed orders.
 */
export async function checkApp(
  admin: pg.Pool,
  load: AppLoad,
  initialStock: Map<number, number>,
  receipts: number[] | undefined,
  inDoubt: number[] = [],
): Promise<{ verdicts: Verdict[]; outcomes: PurchaseOutcomes }> {
  const app = load.app;
  const itemIds = [...new Set([...load.allItems])];
  const items = new Map<number, number>();
  for (const row of (await admin.query<{ id: number; stock: number }>('SELECT id, stock FROM items WHERE id = ANY($1::int[])', [itemIds])).rows) items.set(row.id, row.stock);
  const orders = (
    await admin.query<OrderRow>(
      `SELECT o.id, o.item_id, o.quantity, o.status,
              (SELECT count(*) FROM payments p WHERE p.order_id = o.id)::int AS payments,
              (SELECT count(*) FROM payments p WHERE p.order_id = o.id AND p.amount_cents = o.total_cents)::int AS matching
         FROM orders o WHERE o.item_id = ANY($1::int[])`,
      [itemIds],
    )
  ).rows;
  const byItem = new Map<number, OrderRow[]>();
  for (const order of orders) {
    const list = byItem.get(order.item_id) ?? [];
    list.push(order);
    byItem.set(order.item_id, list);
  }
  const verdicts: Verdict[] = [];

  // ledger: initial stock - current stock = sum of the item's order quantities
  const ledgerBad: unknown[] = [];
  for (const id of itemIds) {
    const initial = initialStock.get(id);
    const stock = items.get(id);
    const sold = (byItem.get(id) ?? []).reduce((n, o) => n + o.quantity, 0);
    if (initial === undefined || stock === undefined || initial - stock !== sold) ledgerBad.push({ item: id, initial, stock, sold });
  }
  verdicts.push({
    app,
    name: 'ledger: initial - stock = sum(order quantities)',
    pass: ledgerBad.length === 0,
    detail: `${itemIds.length} items, ${orders.length} orders, ${ledgerBad.length} mismatched`,
    examples: ledgerBad.slice(0, 5),
  });

  // one payment per order (matching its total), every order paid
  const paymentBad = orders.filter((o) => o.payments !== 1 || o.matching !== 1 || o.status !== 'paid');
  verdicts.push({
    app,
    name: 'every order has exactly one payment',
    pass: paymentBad.length === 0,
    detail: `${orders.length} orders, ${paymentBad.length} without exactly one matching payment (or not paid)`,
    examples: paymentBad.slice(0, 5),
  });

  // per-purchase attribution
  const outcomes: PurchaseOutcomes = { created: 0, refused: 0, abortedCommitted: 0, abortedNothing: 0, abortedAfterResponse: 0, outcomeUnknownCommitted: 0, outcomeUnknownNothing: 0 };
  const unknownOrderIds = new Set<number>();
  const missing: unknown[] = [];
  const leftRows: unknown[] = [];
  const partial: unknown[] = [];
  const faultCreated: unknown[] = [];
  const describe = (p: Purchase, extra: object = {}) => ({
    item: p.itemId,
    quantity: p.quantity,
    failAt: p.failAt,
    abort: p.abort,
    status: p.result.status,
    complete: p.result.complete,
    failure: p.result.failure,
    ...extra,
  });
  for (const p of load.purchases) {
    if (p.failAt && p.result.status === 201) faultCreated.push(describe(p));
    if (p.kind !== 'marker') continue;
    const rows = byItem.get(p.itemId) ?? [];
    const initial = initialStock.get(p.itemId) ?? NaN;
    const stock = items.get(p.itemId);
    const whole = rows.length === 1 && rows[0]!.quantity === p.quantity && rows[0]!.payments === 1 && stock === initial - p.quantity;
    const nothing = rows.length === 0 && stock === initial;
    if (p.result.status === 201) {
      if (!whole || (p.result.complete && p.orderId !== rows[0]?.id)) missing.push(describe(p, { orderId: p.orderId, rows }));
      else if (p.result.complete) outcomes.created++;
      else outcomes.abortedAfterResponse++;
    } else if (outcomeUnknown(p)) {
      if (whole) {
        outcomes.outcomeUnknownCommitted++;
        unknownOrderIds.add(rows[0]!.id);
      } else if (nothing) outcomes.outcomeUnknownNothing++;
      else partial.push(describe(p, { rows, stock, initial }));
    } else if (p.result.status !== undefined) {
      if (!nothing) leftRows.push(describe(p, { rows, stock, initial }));
      else if (p.result.complete) outcomes.refused++;
      else outcomes.abortedAfterResponse++;
    } else if (whole) outcomes.abortedCommitted++;
    else if (nothing) outcomes.abortedNothing++;
    else partial.push(describe(p, { rows, stock, initial }));
  }
  verdicts.push({
    app,
    name: 'every 201 has its order row',
    pass: missing.length === 0,
    detail: `${load.purchases.filter((p) => p.result.status === 201).length} purchases answered 201, ${missing.length} without their row`,
    examples: missing.slice(0, 5),
  });
  verdicts.push({
    app,
    name: '4xx/5xx purchases left no row',
    pass: leftRows.length === 0,
    detail: `${load.purchases.filter((p) => p.kind === 'marker' && p.result.status !== undefined && p.result.status !== 201 && !outcomeUnknown(p)).length} marker purchases answered 4xx/5xx, ${leftRows.length} left rows`,
    examples: leftRows.slice(0, 5),
  });
  verdicts.push({
    app,
    name: 'commit outcome unknown: all or nothing',
    pass: partial.length === 0,
    detail: `${outcomes.outcomeUnknownCommitted + outcomes.outcomeUnknownNothing} answered 500 commit_outcome_unknown: ${outcomes.outcomeUnknownCommitted} committed whole, ${outcomes.outcomeUnknownNothing} left nothing`,
  });
  verdicts.push({
    app,
    name: 'x-fail-at never answered 201',
    pass: faultCreated.length === 0,
    detail: `${load.purchases.filter((p) => p.failAt).length} purchases with x-fail-at, ${faultCreated.length} got 201`,
    examples: faultCreated.slice(0, 5),
  });
  verdicts.push({
    app,
    name: 'aborted purchases: all or nothing',
    pass: partial.length === 0,
    detail: `${outcomes.abortedCommitted} committed whole, ${outcomes.abortedNothing} left nothing, ${partial.length} partial`,
    examples: partial.slice(0, 5),
  });

  // hot items: the set of their orders is exactly the set of ids answered 201 (hot purchases are never aborted on purpose)
  const hot = new Set(load.hotItems);
  const hotOrders = new Set(orders.filter((o) => hot.has(o.item_id)).map((o) => o.id));
  const hotCreated = new Set(load.purchases.filter((p) => p.kind === 'hot' && p.orderId !== undefined).map((p) => p.orderId!));
  const hotNoAnswer = load.purchases.filter((p) => p.kind === 'hot' && p.result.status === undefined).length;
  const hotOutcomeUnknown = load.purchases.filter((p) => p.kind === 'hot' && outcomeUnknown(p)).length;
  const hotUnknown = hotNoAnswer + hotOutcomeUnknown;
  const hotExtra = [...hotOrders].filter((id) => !hotCreated.has(id));
  if (hotOutcomeUnknown > 0) for (const id of hotExtra) unknownOrderIds.add(id);
  const hotMissing = [...hotCreated].filter((id) => !hotOrders.has(id));
  verdicts.push({
    app,
    name: 'hot items: orders == ids answered 201',
    pass: hotMissing.length === 0 && hotExtra.length <= hotUnknown,
    detail: `${hotCreated.size} ids answered 201, ${hotOrders.size} orders on hot items, ${hotMissing.length} missing, ${hotExtra.length} unexplained (${hotNoAnswer} hot purchases got no response, ${hotOutcomeUnknown} commit_outcome_unknown)`,
    examples: [...hotMissing.slice(0, 3), ...hotExtra.slice(0, 3)],
  });

  // receipts: exactly this process's committed orders
  if (receipts === undefined) {
    verdicts.push({ app, name: '/receipts == committed orders', pass: false, detail: 'GET /receipts failed' });
  } else {
    const committed = new Set(orders.map((o) => o.id));
    const listed = new Set(receipts);
    const notCommitted = receipts.filter((id) => !committed.has(id));
    // a COMMIT of unknown outcome runs no afterCommit hook: no receipt, by design; the shop lists those orders as in doubt
    for (const id of inDoubt) unknownOrderIds.add(id);
    const notListed = [...committed].filter((id) => !listed.has(id) && !unknownOrderIds.has(id));
    const unknownNotListed = [...committed].filter((id) => !listed.has(id) && unknownOrderIds.has(id)).length;
    verdicts.push({
      app,
      name: '/receipts == committed orders',
      pass: notCommitted.length === 0 && notListed.length === 0,
      detail: `${receipts.length} receipts, ${committed.size} committed orders, ${notCommitted.length} receipts not committed, ${notListed.length} committed without receipt (+${unknownNotListed} of unknown commit outcome, in doubt: no hook by design)`,
      examples: [...notCommitted.slice(0, 3), ...notListed.slice(0, 3)],
    });
  }
  return { verdicts, outcomes };
}

/** Global: payments without an order (the per-app check covers orders without payments). */
export async function checkOrphanPayments(admin: pg.Pool): Promise<Verdict> {
  const { rows } = await admin.query<{ n: number; total: number }>(
    'SELECT (SELECT count(*) FROM payments p WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = p.order_id))::int AS n, (SELECT count(*) FROM payments)::int AS total',
  );
  const n = rows[0]?.n ?? -1;
  return { app: 'all', name: 'every payment has one order', pass: n === 0, detail: `${rows[0]?.total ?? '?'} payments, ${n} without an order` };
}

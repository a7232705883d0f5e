// Medians over rounds, ratios within one run, and the targets checked against them.

const median = (values) => {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
};
const ratio = (a, b) => (a == null || !b ? null : Math.round((a / b) * 100) / 100);
const round2 = (x) => (x == null ? null : Math.round(x * 100) / 100);

/** The RLS route, and the route without settings it is compared with (same variant, framework, load). */
export const RLS_ROUTE = '/rls/items/:id';
export const NO_SETTINGS_ROUTE = '/items/:id';
const DEFAULT = 'sessionlocal';
const DEFERRED = 'sessionlocal-deferred';

/** One row per framework × route × connections × variant: medians over its rounds. */
export function summarise(cells) {
  const groups = new Map();
  for (const cell of cells) {
    const key = `${cell.framework}|${cell.route}|${cell.connections}|${cell.variant}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(cell);
  }
  const rows = [];
  for (const list of groups.values()) {
    const { framework, route, connections, variant } = list[0];
    const statusCodes = {};
    for (const c of list) for (const [code, n] of Object.entries(c.statusCodes)) statusCodes[code] = (statusCodes[code] ?? 0) + n;
    const non2xx = list.reduce((n, c) => n + c.non2xx, 0);
    rows.push({
      framework,
      route,
      connections,
      variant,
      rounds: list.length,
      reqPerSec: Math.round(median(list.map((c) => c.reqPerSec))),
      p50Ms: round2(median(list.map((c) => c.latencyMs.p50))),
      p99Ms: round2(median(list.map((c) => c.latencyMs.p99))),
      requests: list.reduce((n, c) => n + c.requests, 0),
      errors: list.reduce((n, c) => n + c.errors + c.timeouts, 0),
      non2xx,
      non2xxOther503: non2xx - (statusCodes['503'] ?? 0),
      statusCodes,
      holdMeanMs: round2(median(list.map((c) => c.hold.meanMs))),
      holdP99Ms: round2(median(list.map((c) => c.hold.p99Ms))),
    });
  }
  for (const row of rows) {
    const peer = (variant) => rows.find((r) => r.framework === row.framework && r.route === row.route && r.connections === row.connections && r.variant === variant);
    row.vsManual = ratio(row.reqPerSec, peer('sequelize-manual')?.reqPerSec);
    row.vsRawPg = ratio(row.reqPerSec, peer('raw-pg')?.reqPerSec);
    row.vsCls = ratio(row.reqPerSec, peer('sequelize-cls')?.reqPerSec);
    row.vsBare = ratio(row.reqPerSec, peer('bare')?.reqPerSec);
    row.p99VsManual = ratio(row.p99Ms, peer('sequelize-manual')?.p99Ms);
    // the RLS route against the same variant's route without settings (`/items/:id`: the same findByPk on a table of the same shape)
    row.vsNoSettings =
      row.route === RLS_ROUTE
        ? ratio(row.reqPerSec, rows.find((r) => r.framework === row.framework && r.route === NO_SETTINGS_ROUTE && r.connections === row.connections && r.variant === row.variant)?.reqPerSec)
        : null;
  }
  const order = ['bare', 'raw-pg', 'fastify-postgres', 'sequelize-manual', 'sequelize-cls', 'sessionlocal', 'sessionlocal-deferred', 'sessionlocal-otel'];
  const routeOrder = ['/ping', '/items/:id', '/rls/items/:id', '/orders', 'read-mostly'];
  const frameworkOrder = ['express', 'koa', 'fastify'];
  rows.sort(
    (a, b) =>
      frameworkOrder.indexOf(a.framework) - frameworkOrder.indexOf(b.framework) ||
      routeOrder.indexOf(a.route) - routeOrder.indexOf(b.route) ||
      a.connections - b.connections ||
      order.indexOf(a.variant) - order.indexOf(b.variant),
  );
  return rows;
}

/**
 * The targets (issue 15), each `{ id, label, variant, framework, route, connections, value,
 * threshold, holds }` (`holds` is null when the run lacks a row it needs). `sessionlocal` is the
 * default mode, `sessionlocal-deferred` the deferred-read mode.
 */
export function checkTargets(summary, memory) {
  const targets = [];
  const check = (id, label, row, value, holds) =>
    targets.push({ id, label, variant: row.variant, framework: row.framework, route: row.route, connections: row.connections, value, holds: value == null ? null : holds(value) });
  const of = (variant) => summary.filter((r) => r.variant === variant);
  const db = (r) => r.route !== '/ping';
  for (const row of of(DEFERRED).filter((r) => r.route === '/items/:id')) check('items-vs-manual', 'req/s ≥ 1.5× sequelize-manual', row, row.vsManual, (v) => v >= 1.5);
  for (const variant of [DEFAULT, DEFERRED]) {
    for (const row of of(variant).filter((r) => r.route === '/orders')) check('orders-vs-manual', 'req/s ≥ 1.2× sequelize-manual', row, row.vsManual, (v) => v >= 1.2);
  }
  for (const variant of [DEFAULT, DEFERRED]) {
    for (const row of of(variant).filter(db)) check('vs-cls', 'req/s ≥ 1.5× sequelize-cls', row, row.vsCls, (v) => v >= 1.5);
  }
  for (const row of of(DEFAULT).filter((r) => r.route === RLS_ROUTE)) check('rls-vs-no-settings', `req/s ≥ 0.95× \`${NO_SETTINGS_ROUTE}\` (no settings)`, row, row.vsNoSettings, (v) => v >= 0.95);
  for (const row of of(DEFAULT).filter((r) => r.route === '/ping')) check('ping-vs-bare', '/ping ≥ 0.98× bare', row, row.vsBare, (v) => v >= 0.98);
  for (const variant of [DEFAULT, DEFERRED]) {
    for (const row of of(variant).filter(db)) check('p99-vs-manual', 'p99 ≤ 1.0× sequelize-manual', row, row.p99VsManual, (v) => v <= 1.0);
  }
  const high = Math.max(0, ...summary.map((r) => r.connections));
  if (high >= 256) {
    for (const variant of [DEFAULT, DEFERRED]) {
      for (const row of of(variant).filter((r) => r.connections === high && db(r))) {
        check('no-errors-high', `no errors but 503s at ${high} connections`, row, row.errors + row.non2xxOther503, (v) => v === 0);
      }
    }
  }
  for (const m of memory ?? []) {
    const first = m.checkpoints[0];
    const last = m.checkpoints[m.checkpoints.length - 1];
    const value = ratio(last.rssBytes, first.rssBytes);
    check('rss', `RSS after ${last.requests} req within ±10 % of after ${first.requests} req`, { ...m, route: 'mixed' }, value, (v) => v >= 0.9 && v <= 1.1);
  }
  return targets;
}

// Medians over rounds, ratios within one run, and the targets checked against them.

const median = (values) => {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
};
const ratio = (a, b) => (a == null || !b ? null : Math.round((a / b) * 100) / 100);
const round2 = (x) => (x == null ? null : Math.round(x * 100) / 100);

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
  }
  const order = ['bare', 'raw-pg', 'fastify-postgres', 'sequelize-manual', 'sequelize-cls', 'sessionlocal', 'sessionlocal-otel'];
  const routeOrder = ['/ping', '/items/:id', '/orders'];
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
 * The targets, each `{ id, label, framework, route, connections, value, threshold, holds }`
 * (`holds` is null when the run lacks a row it needs).
 */
export function checkTargets(summary, memory) {
  const targets = [];
  const sl = summary.filter((r) => r.variant === 'sessionlocal');
  for (const row of sl.filter((r) => r.route !== '/ping')) {
    const at = { framework: row.framework, route: row.route, connections: row.connections };
    targets.push({ id: 'vs-manual', label: 'req/s ≥ 1.0× sequelize-manual', ...at, value: row.vsManual, threshold: 1.0, holds: row.vsManual == null ? null : row.vsManual >= 1.0 });
    targets.push({ id: 'vs-cls', label: 'req/s ≥ 1.3× sequelize-cls', ...at, value: row.vsCls, threshold: 1.3, holds: row.vsCls == null ? null : row.vsCls >= 1.3 });
    targets.push({ id: 'p99-vs-manual', label: 'p99 ≤ 1.1× sequelize-manual', ...at, value: row.p99VsManual, threshold: 1.1, holds: row.p99VsManual == null ? null : row.p99VsManual <= 1.1 });
  }
  for (const row of sl.filter((r) => r.route === '/ping')) {
    const holds = row.vsBare == null ? null : row.vsBare >= 0.98;
    targets.push({ id: 'ping-vs-bare', label: '/ping ≥ 0.98× bare', framework: row.framework, route: row.route, connections: row.connections, value: row.vsBare, threshold: 0.98, holds });
  }
  const high = Math.max(0, ...summary.map((r) => r.connections));
  if (high >= 256) {
    for (const row of sl.filter((r) => r.connections === high && r.route !== '/ping')) {
      const bad = row.errors + row.non2xxOther503;
      targets.push({
        id: 'no-errors-high',
        label: `no errors but 503s at ${high} connections`,
        framework: row.framework,
        route: row.route,
        connections: high,
        value: bad,
        threshold: 0,
        holds: bad === 0,
      });
    }
  }
  for (const m of memory ?? []) {
    const first = m.checkpoints[0];
    const last = m.checkpoints[m.checkpoints.length - 1];
    const value = ratio(last.rssBytes, first.rssBytes);
    targets.push({
      id: 'rss',
      label: `RSS after ${last.requests} req ≤ 1.1× after ${first.requests} req`,
      framework: m.framework,
      route: 'mixed',
      connections: m.connections,
      value,
      threshold: 1.1,
      holds: value <= 1.1,
    });
  }
  return targets;
}

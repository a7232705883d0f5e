// latest.md (tables) and latest.svg (req/s bars, hand-written SVG) from a results object.

const fmt = (x, digits = 0) => (x == null ? '—' : Number(x).toFixed(digits));
const times = (x) => (x == null ? '—' : `${x.toFixed(2)}×`);
const mib = (bytes) => (bytes / 2 ** 20).toFixed(1);

/** The Markdown report: machine, command, the summary table, targets, memory. */
export function renderMarkdown(results) {
  const { machine, plan, summary, targets, memory, unavailable } = results;
  const lines = [];
  lines.push('# sessionlocal benchmark');
  lines.push('');
  lines.push(`Command: \`${results.command}\` (${results.generatedAt}, ${results.elapsedS} s).`);
  lines.push(
    `Machine: ${machine.nproc} cores (${machine.cpu}), ${machine.memoryGiB} GiB, ${machine.platform}; servers on Node ${machine.serverNode ?? machine.node}, harness (autocannon) on Node ${machine.node}.`,
  );
  lines.push(
    `Plan: ${plan.rounds} round(s), ${plan.durationS} s per cell after a ${plan.warmupS} s warm-up; DB routes at ${plan.dbLoads.join(' and ')} connections, /ping at ${plan.pingLoads.join(' and ')}; pool max 10; figures are medians over rounds; ratios are req/s against the same framework, route and load in this run.`,
  );
  lines.push('');
  lines.push('| framework | route | conns | variant | req/s | p50 ms | p99 ms | errors | non-2xx | hold mean ms | hold p99 ms | × manual | × raw-pg | × cls | × bare | × no settings |');
  lines.push('|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of summary) {
    const non2xx = r.non2xx ? `${r.non2xx}${r.non2xxOther503 === 0 ? ' (503)' : ''}` : '0';
    const name = r.variant === 'sessionlocal' || r.variant === 'sessionlocal-deferred' ? `**${r.variant}**` : r.variant;
    lines.push(
      `| ${r.framework} | \`${r.route}\` | ${r.connections} | ${name} | ${r.reqPerSec} | ${fmt(r.p50Ms, 1)} | ${fmt(r.p99Ms, 1)} | ${r.errors} | ${non2xx} | ${fmt(r.holdMeanMs, 2)} | ${fmt(r.holdP99Ms, 2)} | ${times(r.vsManual)} | ${times(r.vsRawPg)} | ${times(r.vsCls)} | ${times(r.vsBare)} | ${times(r.vsNoSettings)} |`,
    );
  }
  if (unavailable.length || results.notes?.length) {
    lines.push('');
    for (const u of unavailable) lines.push(`- ${u.framework} × ${u.variant}: not run (${u.reason})`);
    for (const n of results.notes ?? []) lines.push(`- ${n.framework} × ${n.variant}: ${n.note}`);
  }
  lines.push('');
  lines.push(
    "`read-mostly`: a load, not a route: each connection sends 9 `GET /items/:id` then 1 `POST /orders`, in turn. `× no settings`: `/rls/items/:id` (settings per request, row-level security) against the same variant's `/items/:id`.",
  );
  lines.push('');
  lines.push('## Targets');
  lines.push('');
  lines.push('| target | variant | framework | route | conns | value | holds |');
  lines.push('|---|---|---|---|---:|---:|---|');
  for (const t of targets) {
    const value = t.id === 'no-errors-high' ? String(t.value) : t.value == null ? '—' : `${t.value.toFixed(2)}×`;
    lines.push(`| ${t.label} | ${t.variant} | ${t.framework} | \`${t.route}\` | ${t.connections} | ${value} | ${t.holds == null ? 'n/a' : t.holds ? 'yes' : '**no**'} |`);
  }
  const held = targets.filter((t) => t.holds === true).length;
  lines.push('');
  lines.push(`${held} of ${targets.length} target checks hold in this run.`);
  if (memory.length) {
    lines.push('');
    lines.push('## Memory (sessionlocal server, after a forced GC)');
    lines.push('');
    lines.push(`| framework | load | ${memory[0].checkpoints.map((c) => `RSS after ${c.requests} req (MiB)`).join(' | ')} | heap used (MiB) | growth |`);
    lines.push(`|---|---|${memory[0].checkpoints.map(() => '---:').join('|')}|---:|---:|`);
    for (const m of memory) {
      lines.push(
        `| ${m.framework} | ${m.route}, ${m.connections} conns | ${m.checkpoints.map((c) => mib(c.rssBytes)).join(' | ')} | ${m.checkpoints.map((c) => mib(c.heapUsedBytes)).join(' → ')} | ${m.growthPct >= 0 ? '+' : ''}${m.growthPct}% |`,
      );
    }
  }
  lines.push('');
  return lines.join('\n');
}

const COLORS = {
  bare: '#9e9e9e',
  'raw-pg': '#4e79a7',
  'fastify-postgres': '#76b7b2',
  'sequelize-manual': '#f28e2b',
  'sequelize-cls': '#e15759',
  sessionlocal: '#59a14f',
  'sessionlocal-deferred': '#2f6b2a',
  'sessionlocal-otel': '#8cd17d',
};

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Horizontal bars of median req/s, one group per framework × route × load (each group scaled to its own maximum). */
export function renderSvg(results) {
  const groups = [];
  for (const row of results.summary) {
    const key = `${row.framework} ${row.route} @${row.connections}`;
    let group = groups.find((g) => g.key === key);
    if (!group) {
      group = { key, rows: [] };
      groups.push(group);
    }
    group.rows.push(row);
  }
  const width = 760;
  const labelW = 150;
  const barMax = width - labelW - 90;
  const barH = 14;
  const gap = 4;
  let y = 56;
  const parts = [];
  for (const group of groups) {
    parts.push(`<text x="10" y="${y + 12}" class="g">${esc(group.key)}</text>`);
    y += 18;
    const max = Math.max(1, ...group.rows.map((r) => r.reqPerSec));
    for (const r of group.rows) {
      const w = Math.max(1, Math.round((r.reqPerSec / max) * barMax));
      parts.push(`<text x="${labelW - 6}" y="${y + barH - 3}" class="l" text-anchor="end">${esc(r.variant)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${w}" height="${barH}" fill="${COLORS[r.variant] ?? '#333'}"/>`);
      parts.push(`<text x="${labelW + w + 4}" y="${y + barH - 3}" class="v">${r.reqPerSec}</text>`);
      y += barH + gap;
    }
    y += 10;
  }
  const height = y + 10;
  const title = `req/s (median of ${results.plan.rounds} round(s), ${results.plan.durationS} s cells, pool max 10) — ${results.machine.nproc} cores, servers on Node ${results.machine.serverNode ?? results.machine.node}`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, sans-serif" role="img">`,
    `<title>sessionlocal benchmark: ${esc(title)}</title>`,
    '<style>.t{font-size:14px;font-weight:600}.s{font-size:11px;fill:#555}.g{font-size:12px;font-weight:600}.l{font-size:11px}.v{font-size:11px;fill:#333}</style>',
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="10" y="22" class="t">${esc(title)}</text>`,
    `<text x="10" y="40" class="s">${esc(`${results.command} — each group is scaled to its own maximum`)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

#!/usr/bin/env node
// `pnpm bench [--quick] [--node PATH|MAJOR] [--rounds N] [--duration S] [--warmup S] [--frameworks a,b]
//   [--variants a,b] [--routes /ping,/items/:id,/orders,/rls/items/:id,read-mostly] [--loads 32,256]
//   [--ping-loads 32] [--memory-requests 10000,100000] [--no-memory] [--cpu-prof DIR] [--out PREFIX]`
// Full run (no flags): writes results/latest.{json,md,svg}. --quick: results/tmp/quick.*.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FULL_PLAN, killChildrenNow, QUICK_PLAN, ROUTES, runBench, shutdown, VARIANTS } from './harness.js';
import { resolveNode } from './node-binary.js';
import { renderMarkdown, renderSvg } from './report.js';
import { checkTargets, summarise } from './summary.js';

const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const list = (s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
const numbers = (s) => list(s).map(Number);

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    node: { type: 'string' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    frameworks: { type: 'string' },
    variants: { type: 'string' },
    routes: { type: 'string' },
    loads: { type: 'string' },
    'ping-loads': { type: 'string' },
    'memory-requests': { type: 'string' },
    'memory-frameworks': { type: 'string' },
    'no-memory': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    out: { type: 'string' },
  },
  allowPositionals: false,
});

let node;
try {
  node = values.node ? resolveNode(values.node) : undefined;
} catch (error) {
  console.error(error.message);
  process.exit(2);
}
const base = values.quick ? QUICK_PLAN : FULL_PLAN;
const plan = {
  ...base,
  nodePath: node?.path,
  rounds: values.rounds ? Number(values.rounds) : base.rounds,
  durationS: values.duration ? Number(values.duration) : base.durationS,
  warmupS: values.warmup ? Number(values.warmup) : base.warmupS,
  frameworks: values.frameworks ? list(values.frameworks) : base.frameworks,
  variants: values.variants ? list(values.variants) : base.variants,
  routes: values.routes ? list(values.routes) : base.routes,
  dbLoads: values.loads ? numbers(values.loads) : base.dbLoads,
  pingLoads: values['ping-loads'] ? numbers(values['ping-loads']) : base.pingLoads,
  memory:
    values['no-memory'] || !base.memory
      ? false
      : {
          ...base.memory,
          checkpoints: values['memory-requests'] ? numbers(values['memory-requests']) : base.memory.checkpoints,
          frameworks: values['memory-frameworks'] ? list(values['memory-frameworks']) : base.memory.frameworks,
        },
};
if (!(plan.rounds >= 1) || !(plan.durationS > 0) || !(plan.warmupS >= 0)) {
  console.error('--rounds must be >= 1, --duration > 0, --warmup >= 0');
  process.exit(2);
}
const unknownRoutes = plan.routes.filter((r) => !ROUTES.includes(r));
const unknownVariants = plan.variants.filter((v) => !VARIANTS.includes(v) && v !== 'sessionlocal-otel');
if (unknownRoutes.length || unknownVariants.length) {
  console.error(
    [
      unknownRoutes.length && `--routes: unknown ${unknownRoutes.join(', ')} (known: ${ROUTES.join(', ')})`,
      unknownVariants.length && `--variants: unknown ${unknownVariants.join(', ')} (known: ${[...VARIANTS, 'sessionlocal-otel'].join(', ')})`,
    ]
      .filter(Boolean)
      .join('\n'),
  );
  process.exit(2);
}
const outPrefix = resolve(BENCH_DIR, values.out ?? (values.quick ? 'results/tmp/quick' : 'results/latest'));
const command = ['pnpm bench', ...process.argv.slice(2)].join(' ');

let interrupted = false;
const onSignal = (signal) => {
  if (interrupted) return;
  interrupted = true;
  console.error(`\n${signal}: stopping servers and the database`);
  const force = setTimeout(() => process.exit(130), 15_000);
  force.unref();
  shutdown().finally(() => process.exit(130));
};
process.on('SIGINT', () => onSignal('SIGINT'));
process.on('SIGTERM', () => onSignal('SIGTERM'));
process.on('exit', killChildrenNow);

console.log(`${command}: ${plan.frameworks.join(', ')}; ${plan.rounds} round(s) × ${plan.durationS} s cells (+${plan.warmupS} s warm-up); servers on Node ${node?.version ?? process.version}`);
const results = await runBench(plan, { log: (line) => console.log(line), cpuProfDir: values['cpu-prof'] && resolve(values['cpu-prof']) });
results.command = command;
results.summary = summarise(results.cells);
results.targets = checkTargets(results.summary, results.memory);

mkdirSync(dirname(outPrefix), { recursive: true });
writeFileSync(`${outPrefix}.json`, `${JSON.stringify(results, null, 2)}\n`);
const markdown = renderMarkdown(results);
writeFileSync(`${outPrefix}.md`, markdown);
writeFileSync(`${outPrefix}.svg`, renderSvg(results));
console.log(`\n${markdown}`);
console.log(`wrote ${outPrefix}.{json,md,svg}`);
process.exit(0);

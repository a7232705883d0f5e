import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startEmbeddedPostgres } from '@sessionlocal/session-core/testing';
import { ADAPTERS, type AdapterName } from './frameworks.js';
import { fuzz, replay } from './fuzz.js';
import { KNOWN_BROKEN } from './known-broken.js';
import { type Program, programToCode } from './program.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '5000' },
    seed: { type: 'string' },
    all: { type: 'boolean', default: false },
    adapters: { type: 'string' },
    'max-failures': { type: 'string', default: '50' },
    json: { type: 'string' },
    program: { type: 'string' },
  },
});
const adapters = (values.adapters?.split(',') ?? ADAPTERS) as AdapterName[];

/** `--program '<json>'`: run one printed counterexample and show what each adapter did. */
async function replayOne(json: string): Promise<number> {
  const program = JSON.parse(json) as Program;
  console.log(programToCode(program));
  const { observations, violations } = await replay(program, adapters);
  for (const o of observations) {
    const client = o.client.kind === 'response' ? `${o.client.status}${o.client.complete ? '' : ' (truncated)'} ${o.client.body.slice(0, 100)}` : o.client.kind;
    console.log(`\n[${o.adapter}] client: ${client}`);
    console.log(`  errors: ${o.trace.errors.map((e) => `${e.at}: ${e.cls}`).join('; ') || 'none'}`);
    console.log(`  units: ${o.trace.units.join(', ')}; rows: ${o.rows.map((r) => `#${r.seq}@${r.sess}`).join(' ') || 'none'}`);
  }
  for (const x of violations) console.log(`  ✗ invariant ${x.invariant} [${x.adapter}] ${x.rule}: ${x.detail}`);
  return violations.length === 0 ? 0 : 1;
}

/** The fuzz run: print the seed, every distinct counterexample, then the counts. */
async function fuzzMany(): Promise<number> {
  const seed = values.seed === undefined ? (Date.now() ^ (Math.random() * 0x7fffffff)) | 0 : Number(values.seed);
  const runs = Number(values.runs);
  console.log(`pnpm fuzz --runs ${runs} --seed ${seed}${values.all ? ' --all' : ''} (adapters: ${adapters.join(', ')})`);
  if (!values.all && KNOWN_BROKEN.length > 0) console.log(`known broken, not generated (--all to include): ${KNOWN_BROKEN.map((k) => `${k.features.join('+')} (${k.behaviour})`).join(', ')}`);
  const result = await fuzz({ runs, seed, all: values.all, adapters, maxFailures: Number(values['max-failures']), log: (line) => console.log(line) });
  console.log(
    `\n${result.programs} programs × ${adapters.length} adapters (${result.executions} executions incl. shrinking) in ${(result.ms / 1000).toFixed(1)} s: ${result.failures.length} distinct counterexample(s); reproduce with --seed ${seed}`,
  );
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2));
  return result.failures.length === 0 ? 0 : 1;
}

// Without DATABASE_URL, one embedded PostgreSQL for the run (the testing helpers pick it up), stopped at the end.
const embedded = process.env.DATABASE_URL ? undefined : await startEmbeddedPostgres();
if (embedded) process.env.SESSIONLOCAL_TEST_DATABASE_URL = embedded.url;
try {
  process.exitCode = values.program ? await replayOne(values.program) : await fuzzMany();
} finally {
  await embedded?.stop();
}

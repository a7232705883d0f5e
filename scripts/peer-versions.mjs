// Print CONSUMER_VERSIONS for the CI peer job: the lowest or the highest registry version of each
// declared peer range (sequelize, pg, express, koa, fastify, @opentelemetry/api, read from the
// published packages' peerDependencies), plus the newest @types/express and @types/koa of the
// same major.
// Usage: node scripts/peer-versions.mjs lowest|highest [--test]
// --test: run the consumer test with them and the conformance suite (CONSUMER_VERSIONS=...
// CONSUMER_CONFORMANCE=1 node scripts/consumer-test.mjs), as the CI peer job and .ci/run do.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { publishedPackages, root } from './lib/packages.mjs';

const PEERS = ['sequelize', 'pg', 'express', 'koa', 'fastify', '@opentelemetry/api'];
const TYPES = { express: '@types/express', koa: '@types/koa' };
const which = process.argv[2];
if (which !== 'lowest' && which !== 'highest') {
  console.error('usage: node scripts/peer-versions.mjs lowest|highest [--test]');
  process.exit(2);
}

const ranges = new Map();
for (const pkg of publishedPackages()) {
  for (const name of PEERS) {
    const range = pkg.manifest.peerDependencies?.[name];
    if (range && ranges.has(name) && ranges.get(name) !== range) throw new Error(`${name}: ${pkg.name} declares ${range}, another package ${ranges.get(name)}`);
    if (range) ranges.set(name, range);
  }
}

const picked = [];
for (const [name, range] of ranges) {
  const version = pick(name, range, which);
  picked.push(`${name}@${version}`);
  if (TYPES[name]) picked.push(`${TYPES[name]}@${pick(TYPES[name], `^${version.split('.')[0]}`, 'highest')}`);
}
console.log(picked.join(' '));
if (process.argv.includes('--test')) {
  // the conformance report joins the others (scripts/count-tests.mjs) as vitest-peers-<lowest|highest>.json
  const report = join(root, 'packages', 'compat-tests', 'test-results', `vitest-peers-${which}.json`);
  rmSync(report, { force: true });
  const env = { ...process.env, CONSUMER_VERSIONS: picked.join(' '), CONSUMER_CONFORMANCE: '1', CONSUMER_REPORT: report };
  const result = spawnSync(process.execPath, [join(root, 'scripts', 'consumer-test.mjs')], { stdio: 'inherit', env });
  if (result.status === 0 && !existsSync(report)) {
    console.error(`::: the conformance suite wrote no ${report}`);
    process.exit(1);
  }
  process.exit(result.status ?? 1);
}

/** The lowest or highest published, non-prerelease version that satisfies `range`. */
function pick(name, range, end) {
  const out = execFileSync('npm', ['view', `${name}@${range}`, 'version', '--json', '--no-update-notifier'], { encoding: 'utf8' });
  const parsed = JSON.parse(out);
  const versions = (Array.isArray(parsed) ? parsed : [parsed]).filter((v) => /^\d+\.\d+\.\d+$/.test(v));
  if (versions.length === 0) throw new Error(`no published version of ${name} satisfies ${range}`);
  versions.sort((a, b) => {
    const [x, y] = [a, b].map((v) => v.split('.').map(Number));
    return x[0] - y[0] || x[1] - y[1] || x[2] - y[2];
  });
  return end === 'lowest' ? versions[0] : versions.at(-1);
}

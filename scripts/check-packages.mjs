// Packaging check for every published package: `pnpm pack` it (as `pnpm publish` would), then run
// publint and @arethetypeswrong/cli (attw) on the tarball. Exits non-zero on any problem.
//
// attw runs with `--profile esm-only`. Our packages are ESM-only on purpose: a dual ESM+CJS build
// would load two copies of the module (two AsyncLocalStorage instances, two sets of error classes,
// so `instanceof PoolTimeoutError` could fail), which breaks the library's whole point. CommonJS
// callers still work: Node >= 20.19 (our `engines`) loads ESM through `require()` unflagged, and
// TypeScript >= 5.8 with `module: nodenext` types `require()` of ESM. The strict profile's
// "CJS resolves to ESM" (node16-from-CJS) and node10 ("no `exports` support") findings are
// therefore expected and out of scope; the consumer test (scripts/consumer-test.mjs) proves that
// `require()` works for real, from JavaScript and from a type-checked `.cts` file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pack, publishedPackages, root } from './lib/packages.mjs';

const bin = (name) => join(root, 'node_modules', '.bin', name);
const work = mkdtempSync(join(tmpdir(), 'sessionlocal-pack-'));
let failed = 0;
const summary = [];

try {
  for (const pkg of publishedPackages()) {
    if (!pkg.built) {
      console.log(`::: ${pkg.name}: no dist/ (run pnpm build) — FAILED`);
      summary.push(`${pkg.name}: not built`);
      failed++;
      continue;
    }
    const tarball = pack(pkg, work);
    console.log(`::: ${pkg.name} (${tarball.split('/').pop()})`);
    const publint = spawnSync(bin('publint'), ['run', tarball, '--strict'], { cwd: pkg.dir, encoding: 'utf8' });
    process.stdout.write(publint.stdout + publint.stderr);
    const attw = spawnSync(bin('attw'), [tarball, '--profile', 'esm-only', '--format', 'table-flipped', '--no-color'], { cwd: pkg.dir, encoding: 'utf8' });
    process.stdout.write(attw.stdout + attw.stderr);
    const ok = publint.status === 0 && attw.status === 0;
    summary.push(`${pkg.name}: publint ${publint.status === 0 ? 'ok' : 'FAILED'}, attw ${attw.status === 0 ? 'ok' : 'FAILED'}`);
    if (!ok) failed++;
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

console.log(`::: packaging\n${summary.map((line) => `  ${line}`).join('\n')}`);
process.exit(failed > 0 ? 1 : 0);

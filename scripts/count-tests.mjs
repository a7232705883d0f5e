// Sum every package's vitest JSON reports (test-results/vitest.json, plus test-results/vitest-node24.json
// and the like from scripts/test-on-node.sh) into one closing line, after one line per extra Node run.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const roots = ['packages', 'apps', 'bench', 'chaos', 'fuzz', 'docs', 'tests'];
const reports = [];
const visit = (dir, depth) => {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (name === 'node_modules' || name === 'dist') continue;
    const path = join(dir, name);
    if (name === 'test-results') {
      for (const file of readdirSync(path)) if (/^vitest(-[\w.-]+)?\.json$/.test(file)) reports.push(join(path, file));
    } else if (depth < 3 && statSync(path).isDirectory()) {
      visit(path, depth + 1);
    }
  }
};
for (const root of roots) visit(root, 0);

let passed = 0;
let failed = 0;
const runs = new Map(); // 'node24' -> { passed, failed, files }
for (const file of reports) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  const p = report.numPassedTests ?? 0;
  let f = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTestSuites ?? 0);
  if (report.success === false && (report.numFailedTests ?? 0) === 0) f += 1;
  passed += p;
  failed += f;
  const run = file.match(/vitest-([\w.-]+)\.json$/)?.[1];
  if (run) {
    const total = runs.get(run) ?? { passed: 0, failed: 0, files: [] };
    total.passed += p;
    total.failed += f;
    total.files.push(`${relative('.', join(file, '..', '..'))} ${p}/${p + f}`);
    runs.set(run, total);
  }
}
for (const [run, total] of runs) console.log(`::: ${run} reports (counted below too): ${total.passed} of ${total.passed + total.failed} passed; ${total.files.join(', ')}`);
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);

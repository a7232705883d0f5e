// Sum every package's vitest JSON report (test-results/vitest.json) into one closing line.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

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
      const file = join(path, 'vitest.json');
      try {
        statSync(file);
        reports.push(file);
      } catch {}
    } else if (depth < 3 && statSync(path).isDirectory()) {
      visit(path, depth + 1);
    }
  }
};
for (const root of roots) visit(root, 0);

let passed = 0;
let failed = 0;
for (const file of reports) {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed += report.numPassedTests ?? 0;
  failed += (report.numFailedTests ?? 0) + (report.numRuntimeErrorTestSuites ?? 0);
  if (report.success === false && (report.numFailedTests ?? 0) === 0) failed += 1;
}
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);

#!/usr/bin/env node
// Top self-time functions of a V8 .cpuprofile (as written by `node --cpu-prof`).
// usage: node src/profile-top.js FILE.cpuprofile [N]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// paths inside this checkout are shown relative to it (packages/…, bench/…)
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

const [file, n = '25'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node src/profile-top.js FILE.cpuprofile [N]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const selfSamples = new Map();
for (const id of profile.samples) selfSamples.set(id, (selfSamples.get(id) ?? 0) + 1);
const total = profile.samples.length;
const totals = new Map();
for (const [id, count] of selfSamples) {
  const { functionName, url, lineNumber } = byId.get(id).callFrame;
  const where = url ? `${url.replace(/^file:\/\//, '').replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')}:${lineNumber + 1}` : '';
  const key = `${functionName || '(anonymous)'} ${where}`.trim();
  totals.set(key, (totals.get(key) ?? 0) + count);
}
const rows = [...totals].sort((a, b) => b[1] - a[1]).slice(0, Number(n));
console.log(`${total} samples`);
for (const [key, count] of rows) console.log(`${((count / total) * 100).toFixed(1).padStart(5)}%  ${key}`);

// Self time by source file: where the server's own CPU goes, package by package.
const byFile = new Map();
for (const [id, count] of selfSamples) {
  const { url } = byId.get(id).callFrame;
  const file = url
    ? url
        .replace(/^file:\/\//, '')
        .replace(/.*node_modules\/\.pnpm\/[^/]+\/node_modules\//, '')
        .replace(REPO_ROOT, '')
    : byId.get(id).callFrame.functionName || '(native)';
  byFile.set(file, (byFile.get(file) ?? 0) + count);
}
console.log('\nby file:');
for (const [file, count] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${((count / total) * 100).toFixed(1).padStart(5)}%  ${file}`);

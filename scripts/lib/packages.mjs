// Helpers shared by the packaging check and the consumer test: find the published packages
// (every packages/* that is not private) and pack them with pnpm, which rewrites `workspace:^`.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '..', '..');

/** Published workspace packages: `{ name, dir, manifest, built }`, session-core first. */
export function publishedPackages() {
  const base = join(root, 'packages');
  const found = [];
  for (const entry of readdirSync(base).sort()) {
    const dir = join(base, entry);
    const file = join(dir, 'package.json');
    if (!existsSync(file)) continue;
    const manifest = JSON.parse(readFileSync(file, 'utf8'));
    if (manifest.private) continue;
    found.push({ name: manifest.name, dir, manifest, built: existsSync(join(dir, 'dist')) && readdirSync(join(dir, 'dist')).length > 0 });
  }
  return found.sort((a, b) => Number(b.name.endsWith('/session-core')) - Number(a.name.endsWith('/session-core')));
}

/** `pnpm pack` one package into `destination`; returns the tarball's absolute path. */
export function pack(pkg, destination) {
  const out = execFileSync('pnpm', ['pack', '--pack-destination', destination], { cwd: pkg.dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const tarball = out
    .trim()
    .split('\n')
    .map((line) => line.trim())
    .reverse()
    .find((line) => line.endsWith('.tgz'));
  if (!tarball) throw new Error(`pnpm pack printed no tarball for ${pkg.name}:\n${out}`);
  return resolve(destination, tarball);
}

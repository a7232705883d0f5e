import { createRequire } from 'node:module';
import { join } from 'node:path';
import { readFileSync, realpathSync } from 'node:fs';

const require = createRequire(import.meta.url);

/** The version of the package `name` (an alias such as `express4` too) as this package resolves it. */
export function resolvedVersion(name: string): string {
  return (require(`${name}/package.json`) as { version: string }).version;
}

/**
 * Versions of the package (by its real name, e.g. `express`) whose main module this process has
 * loaded through Node's CommonJS loader. Express and Koa are CommonJS, so every copy that anything
 * (the test, an adapter, a router) loaded is in `require.cache`.
 */
export function loadedVersions(realName: string): string[] {
  const versions = new Set<string>();
  for (const file of Object.keys(require.cache)) {
    const match = file.match(new RegExp(`^(.*[\\\\/]node_modules[\\\\/]${realName.replace('/', '[\\\\/]')})[\\\\/]`));
    if (!match) continue;
    const manifest = JSON.parse(readFileSync(join(realpathSync(match[1]!), 'package.json'), 'utf8')) as { name: string; version: string };
    if (manifest.name === realName) versions.add(manifest.version);
  }
  return [...versions];
}

/** The module specifiers that the built adapter imports at run time (type-only imports are erased). */
export function runtimeImports(adapter: string): string[] {
  const entry = require.resolve(adapter);
  const source = readFileSync(entry, 'utf8');
  const found = [...source.matchAll(/(?:^|\n)\s*import\s[^'"]*?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]|\brequire\(\s*['"]([^'"]+)['"]/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
  return [...new Set(found)].sort();
}

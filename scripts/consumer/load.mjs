// import() every entry point of the installed tarballs; check that require() sees the same module.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const { entries, resolveOnly } = JSON.parse(readFileSync(new URL('./entries.json', import.meta.url), 'utf8'));
const require = createRequire(import.meta.url);
for (const spec of entries) {
  const mod = await import(spec);
  const keys = Object.keys(mod);
  if (keys.length === 0) throw new Error(`import('${spec}') has no exports`);
  console.log(`  import('${spec}'): ${keys.length} exports`);
}
for (const spec of resolveOnly) {
  console.log(`  import.meta.resolve('${spec}'): ${import.meta.resolve(spec).replace(/^.*node_modules\//, '')} (loads under vitest only)`);
}
const esm = await import('@sessionlocal/session-core');
const cjs = require('@sessionlocal/session-core');
if (esm.SessionLocalError !== cjs.SessionLocalError || esm.sessionmaker !== cjs.sessionmaker) {
  throw new Error('import() and require() loaded two copies of @sessionlocal/session-core');
}
console.log('  import() and require() share one @sessionlocal/session-core instance');

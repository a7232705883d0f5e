// require() every entry point (Node >= 20.19 loads ESM through require()).
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const { entries } = JSON.parse(readFileSync(join(__dirname, 'entries.json'), 'utf8'));
for (const spec of entries) {
  const mod = require(spec);
  const keys = Object.keys(mod).filter((key) => key !== '__esModule' && key !== 'module.exports');
  if (keys.length === 0) throw new Error(`require('${spec}') has no exports`);
  console.log(`  require('${spec}'): ${keys.length} exports`);
}
const { sessionmaker, ConfigError } = require('@sessionlocal/session-core');
try {
  sessionmaker(undefined);
} catch (error) {
  if (!(error instanceof Error)) throw error;
}
if (typeof ConfigError !== 'function') throw new Error('ConfigError is not a class under require()');

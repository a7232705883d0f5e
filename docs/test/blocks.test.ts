import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createTestDatabase, testDatabaseUrl } from '@sessionlocal/session-core/testing';
import pg from 'pg';
import ts from 'typescript';
import { beforeAll, describe, expect, it } from 'vitest';
import { type Block, blockFileName, CHECKED, extractBlocks, NOT_CODE } from './markdown-blocks.js';

/**
 * Every fenced block of docs/*.md and the root README.md: ts blocks are type-checked with tsc
 * (strict, NodeNext), `<!-- run ... -->` blocks are executed against a real database, sql blocks
 * are run, bash blocks are parsed and their pnpm commands must exist, json must parse;
 * text/ini/python/mermaid are shown, not checked. Any other language fails the test.
 */

const docsDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const root = resolve(docsDir, '..');
const blocksDir = join(docsDir, '.blocks');
const require = createRequire(import.meta.url);

const sources = [
  ...readdirSync(docsDir)
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(docsDir, name)),
  join(root, 'README.md'),
];

interface Doc {
  file: string;
  dir: string;
  blocks: Block[];
}

const docs: Doc[] = sources.map((path) => {
  const file = relative(root, path);
  return { file, dir: join(blocksDir, basename(file, '.md')), blocks: extractBlocks(path, file) };
});
const allBlocks = docs.flatMap((doc) => doc.blocks);
const where = (block: Block) => `${block.file}:${block.line}`;

/** Generated file -> block, to map tsc's diagnostics back to Markdown lines. */
const generated = new Map<string, Block>();

beforeAll(() => {
  rmSync(blocksDir, { recursive: true, force: true });
  mkdirSync(blocksDir, { recursive: true });
  writeFileSync(
    join(blocksDir, 'tsconfig.json'),
    JSON.stringify(
      {
        extends: '../../tsconfig.base.json',
        compilerOptions: { noEmit: true, module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, declaration: false, declarationMap: false, sourceMap: false, rootDir: '.' },
        include: ['**/*.ts'],
      },
      null,
      2,
    ),
  );
  for (const doc of docs) {
    for (const block of doc.blocks) {
      if (block.lang !== 'ts') continue;
      const path = join(doc.dir, blockFileName(block));
      if (generated.has(path)) throw new Error(`${where(block)}: two blocks are written to ${relative(docsDir, path)}`);
      generated.set(path, block);
      mkdirSync(dirname(path), { recursive: true });
      // the block's line k is the file's line k; `export {}` makes every block a module (top-level await, no shared globals)
      const source = `${block.code}\nexport {};\n`;
      writeFileSync(path, source);
      if (!path.endsWith('.test.ts')) {
        const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }, fileName: path }).outputText;
        writeFileSync(path.replace(/\.ts$/, '.js'), js);
      }
    }
  }
});

describe('documentation code blocks', () => {
  it('have a language the test knows (checked, or explicitly not code)', () => {
    const problems: string[] = [];
    for (const block of allBlocks) {
      if (!CHECKED.has(block.lang) && !NOT_CODE.has(block.lang)) {
        problems.push(`${where(block)}: \`\`\`${block.lang || '(no language)'} is neither checked (${[...CHECKED].join(', ')}) nor listed as not code (${[...NOT_CODE].join(', ')})`);
      }
      if (block.run && block.lang !== 'ts') problems.push(`${where(block)}: only ts blocks take a run marker (sql blocks always run)`);
    }
    expect(problems).toEqual([]);
    expect(allBlocks.filter((b) => b.lang === 'ts').length).toBeGreaterThan(10);
  });

  it('compile: every ts block passes tsc --noEmit (strict, NodeNext)', async () => {
    const tsc = require.resolve('typescript/bin/tsc');
    const output = await new Promise<string>((resolvePromise) => {
      execFile(process.execPath, [tsc, '-p', join(blocksDir, 'tsconfig.json'), '--pretty', 'false'], { cwd: blocksDir, maxBuffer: 16 * 1024 * 1024 }, (_error, stdout, stderr) =>
        resolvePromise(`${stdout}${stderr}`),
      );
    });
    const errors: string[] = [];
    for (const line of output.split('\n')) {
      const m = /^(.+?)\((\d+),(\d+)\): error (TS\d+): (.*)$/.exec(line);
      if (m) {
        const block = generated.get(resolve(blocksDir, m[1]!));
        const at = block ? `${block.file}:${block.line + Number(m[2])}:${m[3]}` : `docs/.blocks/${m[1]}:${m[2]}:${m[3]}`;
        errors.push(`${at}: ${m[4]} ${m[5]}`);
      } else if (line.trim() && errors.length > 0) {
        errors[errors.length - 1] += `\n  ${line.trim()}`;
      } else if (line.trim()) {
        errors.push(line.trim());
      }
    }
    if (errors.length > 0) throw new Error(`${errors.length} error(s) in ts code blocks:\n${errors.join('\n')}`);
  });

  it('bash blocks parse, and every pnpm command names an existing script or package', () => {
    const problems: string[] = [];
    for (const block of allBlocks.filter((b) => b.lang === 'bash')) {
      const syntax = spawnSync('bash', ['-n'], { input: block.code, encoding: 'utf8' });
      if (syntax.status !== 0) problems.push(`${where(block)}: bash -n: ${syntax.stderr.trim()}`);
      block.code.split('\n').forEach((text, i) => {
        for (const problem of checkPnpmCommands(text)) problems.push(`${block.file}:${block.line + i + 1}: ${problem}`);
      });
    }
    expect(problems).toEqual([]);
  });

  it('json blocks parse', () => {
    const problems: string[] = [];
    for (const block of allBlocks.filter((b) => b.lang === 'json')) {
      try {
        JSON.parse(block.code);
      } catch (error) {
        problems.push(`${where(block)}: ${(error as Error).message}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('relative links point to files that exist', () => {
    const problems: string[] = [];
    for (const path of sources) {
      const text = readFileSync(path, 'utf8').replace(/^(`{3,}|~{3,})[^\n]*\n[\s\S]*?^\1\s*$/gm, '');
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/i.test(target!) || target!.startsWith('#')) continue;
        if (!existsSync(resolve(dirname(path), target!.split('#')[0]!))) problems.push(`${relative(root, path)}: broken link ${target}`);
      }
    }
    expect(problems).toEqual([]);
  });

  const runnable = docs.filter((doc) => doc.blocks.some((b) => b.run || b.lang === 'sql'));
  it.each(runnable.map((doc) => [doc.file, doc] as const))('run: the sql and runnable ts blocks of %s succeed against a real database', async (_file, doc) => {
    await runDoc(doc);
  });
});

/** Run the doc's sql blocks and `<!-- run -->` ts blocks in order, in a database of their own. */
async function runDoc(doc: Doc): Promise<void> {
  const db = await createTestDatabase('sl_docs');
  const roles = [...new Set(doc.blocks.filter((b) => b.lang === 'sql').flatMap((b) => [...b.code.matchAll(/CREATE ROLE (\w+)/gi)].map((m) => m[1]!)))];
  const admin = new pg.Client({ connectionString: await testDatabaseUrl() });
  await admin.connect();
  try {
    for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`);
    for (const block of doc.blocks) {
      if (block.lang === 'sql') await runSql(block, db.url);
      else if (block.lang === 'ts' && block.run) await runTs(block, join(doc.dir, blockFileName(block)), db.url);
    }
  } finally {
    await db.drop();
    for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
  }
}

async function runSql(block: Block, url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(block.code);
  } catch (error) {
    throw new Error(`${where(block)}: the sql block failed: ${(error as Error).message}`, { cause: error });
  } finally {
    await client.end();
  }
}

async function runTs(block: Block, tsPath: string, databaseUrl: string): Promise<void> {
  const run = block.run!;
  const url = new URL(databaseUrl);
  if (run.user) {
    url.username = run.user.name;
    url.password = run.user.password;
  }
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(VITEST|TINYPOOL|SESSIONLOCAL_TEST)/.test(key)));
  Object.assign(env, { DATABASE_URL: url.toString(), PORT: '0', NODE_ENV: 'test' });
  if (run.mode === 'vitest') {
    const vitest = join(dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
    // a config of its own, or vitest would find docs/vitest.config.ts above the block
    const config = join(dirname(tsPath), 'vitest.config.mjs');
    writeFileSync(config, `export default { test: { include: [${JSON.stringify(basename(tsPath))}], testTimeout: 30000, hookTimeout: 60000 } };\n`);
    const result = await exec(spawn(process.execPath, [vitest, 'run', '--config', config, '--root', dirname(tsPath)], { cwd: dirname(tsPath), env }), 120_000);
    if (result.code !== 0) throw new Error(`${where(block)}: the vitest block failed (exit ${result.code}):\n${result.output.slice(-4000)}`);
    return;
  }
  const child = spawn(process.execPath, [tsPath.replace(/\.ts$/, '.js')], { cwd: dirname(tsPath), env });
  if (run.mode === 'script') {
    const result = await exec(child, 60_000);
    if (result.code !== 0) throw new Error(`${where(block)}: the block exited with ${result.code}:\n${result.output.slice(-4000)}`);
    return;
  }
  const result = exec(child, 90_000);
  try {
    const base = await serverUrl(child, 60_000);
    for (const request of run.requests) {
      const response = await fetch(new URL(request.path, base), {
        method: request.method,
        headers: request.body === undefined ? {} : { 'content-type': 'application/json' },
        body: request.body === undefined ? undefined : JSON.stringify(request.body),
      });
      const text = await response.text();
      if (response.status !== request.status || (request.contains !== undefined && !text.includes(request.contains))) {
        const expected = `${request.status}${request.contains === undefined ? '' : ` with ${request.contains}`}`;
        throw new Error(`${where(block)}: ${request.method} ${request.path} answered ${response.status}, expected ${expected}: ${text.slice(0, 500)}`);
      }
    }
  } catch (error) {
    child.kill('SIGKILL');
    const { output } = await result;
    const message = (error as Error).message;
    throw new Error(`${message.startsWith(where(block)) ? '' : `${where(block)}: `}${message}\n--- output of the block ---\n${output.slice(-4000)}`, { cause: error });
  }
  child.kill('SIGTERM');
  await result;
}

/** Wait for a child to exit (killed after `timeoutMs`); its exit code and combined output. */
function exec(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => {
      output += `\n[killed after ${timeoutMs} ms]`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, output });
    });
  });
}

/** The first http:// URL the server prints on stdout. */
function serverUrl(child: ChildProcess, timeoutMs: number): Promise<URL> {
  return new Promise((resolvePromise, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`no http:// URL printed within ${timeoutMs} ms`)), timeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const m = /https?:\/\/[^\s'"]+/.exec(seen);
      if (m) {
        clearTimeout(timer);
        resolvePromise(new URL(m[0].replace('//localhost', '//127.0.0.1').replace('//[::1]', '//127.0.0.1')));
      }
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before printing its URL`));
    });
  });
}

const PNPM_BUILTINS = new Set(['install', 'i', 'add', 'remove', 'exec', 'dlx', 'why', 'list', 'ls', 'update', 'publish', 'pack', 'store', 'create', 'init', 'outdated']);

/** Workspace packages by name and by path (`./apps/express-shop`), with their scripts. */
const workspace = (() => {
  const byKey = new Map<string, { name: string; scripts: Record<string, string> }>();
  const dirs = ['.', 'bench', 'chaos', 'docs', ...['packages', 'apps'].flatMap((parent) => readdirSync(join(root, parent)).map((d) => `${parent}/${d}`))];
  for (const dir of dirs) {
    const manifest = join(root, dir, 'package.json');
    if (!existsSync(manifest)) continue;
    const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; scripts?: Record<string, string> };
    const entry = { name: pkg.name, scripts: pkg.scripts ?? {} };
    byKey.set(pkg.name, entry);
    byKey.set(dir === '.' ? '.' : `./${dir}`, entry);
  }
  return byKey;
})();

function checkPnpmCommands(line: string): string[] {
  const problems: string[] = [];
  const code = line.replace(/(^|\s)#.*$/, '');
  for (const segment of code.split(/&&|\|\||;|\|/)) {
    const words = segment.trim().split(/\s+/).filter(Boolean);
    while (words[0] && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) words.shift();
    if (words[0] === 'cd') continue;
    if (words.shift() !== 'pnpm') continue;
    let target = '.';
    while (words[0]?.startsWith('-')) {
      const flag = words.shift()!;
      if (flag === '--filter' || flag === '-F') target = words.shift() ?? '';
    }
    const pkg = workspace.get(target);
    if (!pkg) {
      problems.push(`pnpm --filter ${target}: no workspace package has that name or path`);
      continue;
    }
    let command = words.shift();
    if (command === 'run') command = words.shift();
    if (command === undefined || PNPM_BUILTINS.has(command)) continue;
    if (!(command in pkg.scripts)) problems.push(`pnpm ${command}: ${pkg.name} has no script "${command}"`);
  }
  return problems;
}

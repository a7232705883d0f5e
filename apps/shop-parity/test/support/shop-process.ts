import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '@sessionlocal/session-core/testing';

export const APPS = ['express-shop', 'koa-shop', 'fastify-shop'] as const;
export type AppName = (typeof APPS)[number];

export const APPS_DIR = fileURLToPath(new URL('../../../', import.meta.url));

/** One sample app running as a real process on 127.0.0.1. */
export interface ShopProcess {
  app: AppName;
  url: string;
  port: number;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** SIGTERM, then wait for exit (SIGKILL after `timeoutMs`); resolves with the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

const STARTUP_TIMEOUT_MS = 60_000;

/**
 * Start `node apps/<app>/dist/main.js` with PORT = a free port and the given environment
 * (`DATABASE_URL` is required: the tests never let an app start its own embedded database).
 * Resolves when the app prints `listening on`.
 */
export async function startShop(app: AppName, env: Record<string, string>): Promise<ShopProcess> {
  const main = `${APPS_DIR}${app}/dist/main.js`;
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`pnpm build\` first (turbo does it before \`pnpm test\`).`);
  if (!env.DATABASE_URL) throw new Error('startShop needs DATABASE_URL');
  const port = await freePort();
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(DB_|SHOP_|PORT$|HOST$)/.test(key)));
  const child: ChildProcess = spawn(process.execPath, [main], {
    env: { ...inherited, HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`${app} did not start within ${STARTUP_TIMEOUT_MS} ms:\n${output}`)), STARTUP_TIMEOUT_MS);
    const onData = () => {
      if (output.includes('listening on')) done();
    };
    const onExit = (code: number | null) => fail(new Error(`${app} exited with code ${code} before listening:\n${output}`));
    function done() {
      cleanup();
      resolve();
    }
    function fail(error: Error) {
      cleanup();
      child.kill('SIGKILL');
      reject(error);
    }
    function cleanup() {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    }
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });

  return {
    app,
    port,
    url: `http://127.0.0.1:${port}`,
    output: () => output,
    exited,
    async stop(timeoutMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

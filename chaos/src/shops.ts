import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { freePort } from '@sessionlocal/session-core/testing';

export const APPS = ['express-shop', 'koa-shop', 'fastify-shop'] as const;
export type AppName = (typeof APPS)[number];

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** One sample shop running as a child process on 127.0.0.1. */
export interface ShopProcess {
  app: AppName;
  port: number;
  child: ChildProcess;
  /** The tail of what the process printed. */
  output(): string;
  /** Lines the shop logged as unexpected failures (`... failed:`), by message. */
  failures: Map<string, number>;
  /** Set when the process exited on its own (not through `stop()`). */
  crashed?: { code: number | null; signal: string | null; tail: string };
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Start `node apps/<app>/dist/main.js`; resolves once it prints `listening on`. */
export async function startShop(app: AppName, env: Record<string, string>, timeoutMs = 60_000): Promise<ShopProcess> {
  const main = `${ROOT}apps/${app}/dist/main.js`;
  if (!existsSync(main)) throw new Error(`${main} is missing: run \`pnpm build\` first`);
  const port = await freePort();
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(DB_|SHOP_|PORT$|HOST$|DATABASE_URL$)/.test(key)));
  const child = spawn(process.execPath, [main], {
    env: { ...inherited, HOST: '127.0.0.1', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let pending = '';
  const failures = new Map<string, number>();
  const onChunk = (chunk: Buffer) => {
    const text = chunk.toString();
    tail = (tail + text).slice(-20_000);
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const match = /failed: (.*)$/.exec(line);
      if (match?.[1]) {
        const key = match[1].replace(/\d+/g, 'N').slice(0, 160);
        failures.set(key, (failures.get(key) ?? 0) + 1);
      }
    }
  };
  child.stdout?.on('data', onChunk);
  child.stderr?.on('data', onChunk);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const started = Date.now();
  for (let i = 0; i < 10_000; i++) {
    if (tail.includes('listening on')) break;
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${app} exited (${child.exitCode ?? child.signalCode}) before listening:\n${tail}`);
    if (Date.now() - started > timeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`${app} did not start within ${timeoutMs} ms:\n${tail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  let stopping = false;
  const shop: ShopProcess = {
    app,
    port,
    child,
    failures,
    output: () => tail,
    async stop(stopTimeoutMs = 10_000) {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  child.once('exit', (code, signal) => {
    if (!stopping) shop.crashed = { code, signal, tail: tail.slice(-4000) };
  });
  return shop;
}

/** A TCP port free on 127.0.0.1 right now (the testing helpers' own). */
export { freePort };

import type { Server } from 'node:http';
import { openShop, type ShopRuntime } from './runtime.js';

/** A listening HTTP server, as each app's `listen` returns it. */
export interface RunningServer {
  /** The port actually bound (PORT=0 picks a free one). */
  port: number;
  /** Stop accepting connections and wait for in-flight requests. */
  close(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 10_000;

/**
 * The `main` of every sample app: open the shop (embedded PostgreSQL when `DATABASE_URL` is
 * unset, migrations), start the app's server, print `<name> listening on http://host:port`,
 * and on SIGTERM/SIGINT stop accepting, dispose the engine, stop the embedded database, exit 0.
 */
export async function runShop(name: string, listen: (runtime: ShopRuntime) => Promise<RunningServer>): Promise<void> {
  const log = (line: string) => console.log(`[${name}] ${line}`);
  let runtime: ShopRuntime | undefined;
  let server: RunningServer | undefined;
  let stopping = false;

  let firstSignalAt = 0;
  const stop = async (signal: string) => {
    if (stopping) {
      // One Ctrl-C often arrives twice (the terminal signals the process group, and a wrapper such
      // as pnpm or timeout forwards it): repeats within 2 s are the same request. Later: exit now.
      if (Date.now() - firstSignalAt > 2_000) {
        log(`${signal} again: exiting now`);
        process.exit(1);
      }
      return;
    }
    stopping = true;
    firstSignalAt = Date.now();
    log(`${signal}: shutting down`);
    const force = setTimeout(() => {
      console.error(`[${name}] shutdown took longer than ${SHUTDOWN_GRACE_MS + 5_000} ms: exiting`);
      process.exit(1);
    }, SHUTDOWN_GRACE_MS + 5_000);
    force.unref();
    let code = 0;
    try {
      await server?.close();
      await runtime?.close();
    } catch (error) {
      console.error(`[${name}] shutdown failed:`, error);
      code = 1;
    }
    log('stopped');
    process.exit(code);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));

  try {
    runtime = await openShop({ name, log });
    if (stopping) return;
    server = await listen(runtime);
    log(`listening on http://${runtime.config.host}:${server.port}`);
  } catch (error) {
    console.error(`[${name}] failed to start:`, error);
    await runtime?.close().catch(() => {});
    process.exit(1);
  }
}

/**
 * Graceful close of a `node:http` server (also Fastify's `app.server`): stop accepting, let
 * in-flight requests finish, and close keep-alive connections as soon as they go idle (one
 * `closeIdleConnections()` is not enough: a connection whose request finishes later would keep
 * the server open until the client's keep-alive timeout). `close` defaults to `server.close`;
 * after the grace period every connection is cut.
 */
export async function closeHttpServer(server: Server, close?: () => Promise<void>): Promise<void> {
  const reap = setInterval(() => server.closeIdleConnections(), 100);
  const cut = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
  reap.unref();
  cut.unref();
  try {
    const closing =
      close?.() ??
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
      });
    server.closeIdleConnections();
    await closing;
  } finally {
    clearInterval(reap);
    clearTimeout(cut);
  }
}

/** Listen on `port`/`host` and resolve once bound. */
export function listenHttpServer(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

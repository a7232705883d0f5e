import { createServer, connect, type Server, type Socket } from 'node:net';

/** What the proxy does with the bytes it receives, in both directions. */
export type FaultMode =
  | { kind: 'pass' }
  /** Every chunk is delivered `ms` after it arrived (order kept). */
  | { kind: 'latency'; ms: number }
  /** Bytes are dropped; sockets stay open (a failover, a dropped route, a NAT timeout). */
  | { kind: 'silent' }
  /** One byte every `intervalMs` (a congested or lossy link). */
  | { kind: 'drip'; intervalMs: number };

/** A TCP proxy on 127.0.0.1 that injects network faults between a client and PostgreSQL. */
export interface FaultProxy {
  readonly port: number;
  readonly mode: FaultMode;
  /** Open client connections. */
  readonly connections: number;
  /** `url` with its host and port replaced by the proxy's. */
  url(url: string): string;
  /** Forward bytes as they come. */
  pass(): void;
  /** Delay every chunk by `ms`. */
  latency(ms: number): void;
  /** Drop every byte, keep every socket open. */
  silent(): void;
  /** Deliver one byte every `intervalMs`. */
  drip(intervalMs: number): void;
  /** Reset every open connection now (both sides see the connection close). */
  reset(): void;
  /**
   * The path forgets every open connection without telling anyone (a NAT or load-balancer
   * timeout): nothing is closed until the client sends again, which is answered with a reset.
   */
  forget(): void;
  /** Stop listening and destroy every connection. */
  close(): Promise<void>;
}

interface Queued {
  chunk: Buffer;
  due: number;
}

/** One direction of one connection: delivers queued chunks in order, under the proxy's mode. */
class Lane {
  private readonly queue: Queued[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly to: Socket,
    private readonly mode: () => FaultMode,
  ) {}

  push(chunk: Buffer): void {
    const mode = this.mode();
    if (mode.kind === 'silent') return;
    this.queue.push({ chunk, due: Date.now() + (mode.kind === 'latency' ? mode.ms : 0) });
    this.pump();
  }

  /** Re-evaluate the queue after a mode change. */
  wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pump();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }

  private pump(): void {
    if (this.timer) return;
    for (let guard = 0; guard < 100_000; guard++) {
      const head = this.queue[0];
      if (!head || this.to.destroyed) return;
      const mode = this.mode();
      if (mode.kind === 'silent') {
        this.queue.length = 0;
        return;
      }
      if (mode.kind === 'drip') {
        this.to.write(head.chunk.subarray(0, 1));
        head.chunk = head.chunk.subarray(1);
        if (head.chunk.length === 0) this.queue.shift();
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, mode.intervalMs);
        return;
      }
      const wait = head.due - Date.now();
      if (wait > 0) {
        this.timer = setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, wait);
        return;
      }
      this.queue.shift();
      this.to.write(head.chunk);
    }
  }
}

interface Link {
  client: Socket;
  upstream: Socket;
  lanes: Lane[];
  forgotten: boolean;
}

/**
 * Start a fault proxy on 127.0.0.1 in front of `target` (PostgreSQL or PgBouncer). Starts in
 * `pass` mode; switch modes at any time, existing connections included.
 * @example
 * const proxy = await startFaultProxy({ port: 5432 });
 * const engine = createEngine(proxy.url(process.env.DATABASE_URL!), { statementTimeoutMs: 1000 });
 * proxy.silent(); // statements now fail with ReplyTimeoutError after ~2 s
 */
export async function startFaultProxy(target: { host?: string; port: number }, options: { port?: number } = {}): Promise<FaultProxy> {
  const host = target.host ?? '127.0.0.1';
  let mode: FaultMode = { kind: 'pass' };
  const links = new Set<Link>();
  const currentMode = () => mode;

  const drop = (link: Link, reset: boolean) => {
    links.delete(link);
    for (const lane of link.lanes) lane.stop();
    if (reset && !link.client.destroyed) link.client.resetAndDestroy();
    else link.client.destroy();
    link.upstream.destroy();
  };

  const server: Server = createServer((client) => {
    const upstream = connect({ host, port: target.port });
    const toUpstream = new Lane(upstream, currentMode);
    const toClient = new Lane(client, currentMode);
    const link: Link = { client, upstream, lanes: [toUpstream, toClient], forgotten: false };
    links.add(link);
    client.on('data', (chunk: Buffer) => {
      if (link.forgotten) drop(link, true);
      else toUpstream.push(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!link.forgotten) toClient.push(chunk);
    });
    const close = () => {
      if (links.has(link)) drop(link, false);
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });

  const setMode = (next: FaultMode) => {
    mode = next;
    for (const link of links) for (const lane of link.lanes) lane.wake();
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  return {
    port,
    get mode() {
      return mode;
    },
    get connections() {
      return links.size;
    },
    url(url: string) {
      const parsed = new URL(url);
      parsed.hostname = '127.0.0.1';
      parsed.port = String(port);
      return parsed.toString();
    },
    pass: () => setMode({ kind: 'pass' }),
    latency: (ms: number) => setMode({ kind: 'latency', ms }),
    silent: () => setMode({ kind: 'silent' }),
    drip: (intervalMs: number) => setMode({ kind: 'drip', intervalMs }),
    reset() {
      for (const link of [...links]) drop(link, true);
    },
    forget() {
      for (const link of links) {
        link.forgotten = true;
        for (const lane of link.lanes) lane.stop();
      }
    },
    async close() {
      for (const link of [...links]) drop(link, false);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

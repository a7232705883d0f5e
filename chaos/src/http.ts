import { type Agent, type IncomingHttpHeaders, request as httpRequest } from 'node:http';

/** What a client saw of one request. */
export interface HttpResult {
  /** The status line, when it arrived (also for a request cut while the body was streaming). */
  status?: number;
  /** The parsed JSON body, when the whole response arrived. */
  body?: unknown;
  /** The response headers, when the status line arrived. */
  headers?: IncomingHttpHeaders;
  /** True when the whole response arrived. */
  complete: boolean;
  /** `aborted`: we destroyed the request on purpose; `timeout`; `error`: the connection failed. */
  failure?: 'aborted' | 'timeout' | 'error';
  errorCode?: string;
  ms: number;
  /** `Date.now()` when the request was sent. */
  startedAt: number;
}

export interface HttpOptions {
  port: number;
  method?: string;
  path: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** `req.destroy()` after this many ms unless the response is complete. */
  abortAfterMs?: number;
  timeoutMs?: number;
  agent?: Agent;
}

/** One HTTP request to 127.0.0.1 with node:http; never rejects. */
export function send(options: HttpOptions): Promise<HttpResult> {
  const started = performance.now();
  const startedAt = Date.now();
  return new Promise((resolve) => {
    let settled = false;
    let status: number | undefined;
    let responseHeaders: IncomingHttpHeaders | undefined;
    const timers: NodeJS.Timeout[] = [];
    const finish = (result: Omit<HttpResult, 'ms' | 'startedAt'>) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      resolve({ ...result, headers: responseHeaders, ms: performance.now() - started, startedAt });
    };
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = Buffer.byteLength(options.body);
    const req = httpRequest({ host: '127.0.0.1', port: options.port, method: options.method ?? 'GET', path: options.path, headers, agent: options.agent }, (res) => {
      status = res.statusCode;
      responseHeaders = res.headers;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = text;
        }
        finish({ status, body, complete: true });
      });
      res.on('error', () => undefined);
      res.on('aborted', () => finish({ status, complete: false, failure: 'error', errorCode: 'RESPONSE_ABORTED' }));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      finish({ status, complete: false, failure: 'error', errorCode: error.code ?? error.message });
    });
    if (options.abortAfterMs !== undefined) {
      timers.push(
        setTimeout(() => {
          if (settled) return;
          finish({ status, complete: false, failure: 'aborted' });
          req.destroy();
        }, options.abortAfterMs),
      );
    }
    timers.push(
      setTimeout(() => {
        if (settled) return;
        finish({ status, complete: false, failure: 'timeout' });
        req.destroy();
      }, options.timeoutMs ?? 30_000),
    );
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

/** Label of a result for the per-status table: `201`, `aborted`, `timeout`, `error:ECONNRESET`, `201-cut`. */
export function label(result: HttpResult): string {
  if (result.complete) return String(result.status);
  if (result.failure === 'aborted') return result.status !== undefined ? `aborted-after-${result.status}` : 'aborted';
  if (result.failure === 'timeout') return 'timeout';
  return `error:${result.errorCode ?? 'unknown'}`;
}

/** Poll `fn` every `intervalMs` until it returns true or `timeoutMs` elapses; resolves with the elapsed ms or undefined. */
export async function until(fn: () => Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<number | undefined> {
  const started = Date.now();
  for (let i = 0; i < 100_000; i++) {
    if (await fn().catch(() => false)) return Date.now() - started;
    if (Date.now() - started >= timeoutMs) return undefined;
    await sleep(Math.min(intervalMs, Math.max(1, timeoutMs - (Date.now() - started))));
  }
  return undefined;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

import http2 from 'node:http2';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { Session } from '../session.js';
import type { SessionFactory } from '../sessionmaker.js';
import { uniqueLabel } from './fixture.js';
import type { HandlerContext } from './kit.js';
import type { Scenario } from './scenarios.js';

// §3 rule 4 over HTTP/2 (kit.http2): a client RST_STREAM before the response rolls back, one
// mid-stream on an 'after-response' route rolls back, one after the status line (COMMIT already
// done) leaves the work committed. The suite's after-each checks pools and idle-in-transaction.

const insert = (factory: SessionFactory, label: string) => factory.engine.sequelize.query('INSERT INTO conf_items (label) VALUES ($1)', { bind: [label] });
const label = (ctx: HandlerContext) => String(ctx.query.label);
const observed = new Map<string, unknown>();

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(10);
  }
}

/** One HTTP/2 request on its own session; `cancel` decides when the client resets the stream. */
function h2(url: string, path: string, method: 'GET' | 'POST', cancel: 'after-ms' | 'on-response' | 'on-first-data' | 'never', ms = 100): Promise<{ status: number; body: string; reset: boolean }> {
  const client = http2.connect(url);
  client.on('error', () => undefined);
  return new Promise((resolve) => {
    const stream = client.request({ ':method': method, ':path': path, ...(method === 'POST' && { 'content-type': 'application/json' }) });
    let status = 0;
    let body = '';
    let reset = false;
    const finish = () => {
      client.close();
      resolve({ status, body, reset });
    };
    const rst = () => {
      if (reset) return;
      reset = true;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    };
    stream.on('error', () => undefined);
    stream.on('response', (headers) => {
      status = Number(headers[':status']);
      if (cancel === 'on-response') rst();
    });
    stream.on('data', (chunk: Buffer) => {
      body += chunk.toString();
      if (cancel === 'on-first-data') rst();
    });
    stream.on('close', finish);
    stream.end(method === 'POST' ? '{}' : undefined);
    if (cancel === 'after-ms') setTimeout(rst, ms);
  });
}

/** A slow body: `chunks` chunks, one every `everyMs`. */
function slowBody(chunks: number, everyMs: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent === chunks) return void this.push(null);
      sent++;
      setTimeout(() => this.push(`chunk ${sent}\n`), everyMs);
    },
  });
}

export const http2Scenarios: Scenario[] = [
  {
    rules: [4],
    name: 'HTTP/2: a client RST_STREAM before the response rolls back, aborts db.signal and releases the connection',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'POST',
          path: '/h2-slow',
          handler: async (ctx) => {
            const name = label(ctx);
            const db = ctx.db;
            try {
              await insert(factory, name); // may already be refused when the reset came first (a slow machine)
              await sleep(300);
            } finally {
              await sleep(50);
              observed.set(name, db instanceof Session && db.signal.aborted);
            }
            return { status: 201, body: { ok: true } };
          },
        },
      ]);
      const name = uniqueLabel('h2-rst-before');
      const reply = await h2(url, `/h2-slow?label=${name}`, 'POST', 'after-ms', 100);
      expect(reply.reset).toBe(true);
      await until(() => observed.has(name), 'the handler settled');
      expect(observed.get(name), 'db.signal aborted by the reset').toBe(true);
      await until(async () => (await t.fx.count('conf_items', name)) === 0 && factory.engine.stats().pool.inUse === 0, 'rolled back and released');
      await sleep(100);
      expect(await t.fx.count('conf_items', name)).toBe(0);
    },
  },
  {
    rules: [2, 4],
    name: "HTTP/2: a client RST_STREAM mid-stream on an 'after-response' route rolls back (the stream never finished)",
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/h2-stream',
          session: { finish: 'after-response' },
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            return { status: 200, headers: { 'content-type': 'text/plain' }, stream: slowBody(50, 20) };
          },
        },
      ]);
      const name = uniqueLabel('h2-rst-mid');
      const reply = await h2(url, `/h2-stream?label=${name}`, 'GET', 'on-first-data');
      expect(reply.status).toBe(200);
      expect(reply.reset).toBe(true);
      await until(() => factory.engine.stats().pool.inUse === 0, 'the session released after the reset');
      expect(await t.fx.count('conf_items', name), 'a stream the client reset is not committed').toBe(0);
      // the same route read to the end commits
      const whole = uniqueLabel('h2-whole');
      const full = await h2(url, `/h2-stream?label=${whole}`, 'GET', 'never');
      expect(full.body.trim().split('\n')).toHaveLength(50);
      await until(async () => (await t.fx.count('conf_items', whole)) === 1, 'the finished stream committed');
    },
  },
  {
    rules: [2, 4],
    name: 'HTTP/2: a client RST_STREAM after the status line (COMMIT already done before it) leaves the work committed',
    async run(t) {
      const { factory } = t.fx;
      const { url } = await t.app([
        {
          method: 'GET',
          path: '/h2-committed',
          handler: async (ctx) => {
            await insert(factory, label(ctx));
            return { status: 200, headers: { 'content-type': 'text/plain' }, stream: slowBody(50, 20) };
          },
        },
      ]);
      const name = uniqueLabel('h2-rst-after');
      const reply = await h2(url, `/h2-committed?label=${name}`, 'GET', 'on-response');
      expect(reply.status).toBe(200);
      expect(reply.reset).toBe(true);
      await until(() => factory.engine.stats().pool.inUse === 0, 'released');
      expect(await t.fx.count('conf_items', name), 'committed before the status line').toBe(1);
    },
  },
];

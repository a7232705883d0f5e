import type { IncomingMessage } from 'node:http';
import { decodeJsonBody, ShopError } from '@sessionlocal/shop-domain';
import type { Middleware } from 'koa';

declare module 'koa' {
  interface Request {
    /** The parsed JSON body; `undefined` when there is none or it is not `application/json`. */
    body?: unknown;
  }
}

/**
 * Koa middleware: an `application/json` body read as bytes (at most `limit`, else 413) and decoded
 * by the domain (strict UTF-8, then JSON), into `ctx.request.body`. @koa/bodyparser cannot be used:
 * co-body always decodes leniently (invalid bytes become U+FFFD) and never hands over the bytes.
 *
 * @example app.use(jsonBody(BODY_LIMIT_BYTES))
 */
export function jsonBody(limit: number): Middleware {
  return async (ctx, next) => {
    if (ctx.is('application/json')) ctx.request.body = decodeJsonBody(await readBody(ctx.req, limit));
    await next();
  };
}

/** The request body's bytes; refuses a body over `limit` before reading it when Content-Length says so. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    if (Number(req.headers['content-length']) > limit) {
      reject(ShopError.bodyTooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        // read off the rest (and drop it) so the 413 can be answered, as body-parser does
        finish(ShopError.bodyTooLarge());
        req.resume();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish();
    const onAborted = () => finish(ShopError.invalidRequest('The request body ended before Content-Length bytes were received.'));
    function finish(error?: Error) {
      req.off('data', onData).off('end', onEnd).off('error', onAborted).off('close', onAborted);
      if (error) reject(error);
      else resolve(Buffer.concat(chunks, size));
    }
    req.on('data', onData).on('end', onEnd).on('error', onAborted).on('close', onAborted);
  });
}

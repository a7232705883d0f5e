import { httpErrorFor } from '@sessionlocal/session-core';

/** Largest JSON body the apps accept (1 MiB), configured the same way in each framework. */
export const BODY_LIMIT_BYTES = 1_048_576;

/** Stable error codes of the shop's HTTP contract. */
export type ShopErrorCode = 'invalid_request' | 'not_found' | 'insufficient_stock' | 'database_busy' | 'internal_error';

/** A domain error the apps turn into `{ error, message }` with `status`. */
export class ShopError extends Error {
  readonly code: ShopErrorCode;
  readonly status: number;

  constructor(code: ShopErrorCode, status: number, message: string) {
    super(message);
    this.name = 'ShopError';
    this.code = code;
    this.status = status;
  }

  static invalidRequest(message: string): ShopError {
    return new ShopError('invalid_request', 400, message);
  }

  /** No body, or JSON that is not an object (`[]`, `"pen"`, `null`). */
  static bodyNotObject(): ShopError {
    return new ShopError('invalid_request', 400, 'The request body must be a JSON object.');
  }

  /** The body could not be parsed as JSON (each framework reports this differently). */
  static malformedJson(): ShopError {
    return new ShopError('invalid_request', 400, 'The request body is not valid JSON.');
  }

  /** The body has bytes that are not UTF-8 (the frameworks would have read them as U+FFFD). */
  static invalidUtf8(): ShopError {
    return new ShopError('invalid_request', 400, 'The request body is not valid UTF-8.');
  }

  /** The body is over `BODY_LIMIT_BYTES`. */
  static bodyTooLarge(): ShopError {
    return new ShopError('invalid_request', 413, `The request body is larger than ${BODY_LIMIT_BYTES} bytes.`);
  }

  static notFound(what: string, id?: number): ShopError {
    return new ShopError('not_found', 404, id === undefined ? `${what} not found.` : `${what} ${id} not found.`);
  }

  static routeNotFound(method: string, path: string): ShopError {
    return new ShopError('not_found', 404, `No route for ${method} ${path}.`);
  }

  static insufficientStock(itemId: number, requested: number, available: number): ShopError {
    return new ShopError('insufficient_stock', 409, `Item ${itemId} has ${available} in stock; ${requested} requested.`);
  }
}

/** The JSON error response of the shop. */
export interface ShopHttpError {
  status: number;
  headers: Record<string, string>;
  body: { error: string; message: string };
}

/**
 * Map any error a handler threw to the shop's response: domain errors keep their status,
 * pool exhaustion is 503 `database_busy` with `Retry-After` (from the core), anything else is
 * 500 `internal_error` (details go to the log, never to the client).
 */
export function toHttpError(error: unknown): ShopHttpError {
  if (error instanceof ShopError) {
    return { status: error.status, headers: {}, body: { error: error.code, message: error.message } };
  }
  const fromCore = httpErrorFor(error);
  if (fromCore) return fromCore;
  const status = clientErrorStatus(error);
  if (status !== undefined) return { status, headers: {}, body: { error: 'invalid_request', message: 'The request could not be read.' } };
  return { status: 500, headers: {}, body: { error: 'internal_error', message: 'Internal server error.' } };
}

/** True when `toHttpError` would hide the error behind a 500 (so the app should log it). */
export function isUnexpected(error: unknown): boolean {
  return !(error instanceof ShopError) && httpErrorFor(error) === undefined && clientErrorStatus(error) === undefined;
}

/** A framework's own 4xx (unsupported charset, bad content-length, ...): the client's fault, said generically. */
function clientErrorStatus(error: unknown): number | undefined {
  const e = error as { status?: unknown; statusCode?: unknown } | null;
  const status = typeof e?.status === 'number' ? e.status : typeof e?.statusCode === 'number' ? e.statusCode : undefined;
  return status !== undefined && Number.isInteger(status) && status >= 400 && status < 500 ? status : undefined;
}

/**
 * A `JSON.parse` reviver refusing `__proto__` and `constructor.prototype` keys, as Fastify's and
 * co-body's parsers do (prototype poisoning): pass it to `express.json({ reviver })`.
 */
export function rejectPrototypeKeys(key: string, value: unknown): unknown {
  if (key === '__proto__' || (key === 'constructor' && value !== null && typeof value === 'object' && 'prototype' in value)) {
    throw new SyntaxError('Object contains forbidden prototype property');
  }
  return value;
}

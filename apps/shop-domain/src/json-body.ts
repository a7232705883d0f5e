import { rejectPrototypeKeys, ShopError } from './errors.js';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decode a request body as UTF-8, refusing invalid bytes (400 `invalid_request`) instead of
 * replacing them with U+FFFD as the frameworks' own decoders do. A leading BOM is dropped.
 *
 * @example express.json({ verify: (_req, _res, bytes) => void decodeUtf8(bytes) })
 */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw ShopError.invalidUtf8();
  }
}

/**
 * A JSON request body from its bytes, the one decision all three apps share: strict UTF-8, then
 * `JSON.parse` refusing prototype keys. An empty body is `undefined` (no body); anything that is
 * not UTF-8 or not JSON throws a 400 `ShopError`. Primitives and arrays are returned as they are:
 * the domain's validation refuses them.
 *
 * @example app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, bytes, done) => done(null, decodeJsonBody(bytes)))
 */
export function decodeJsonBody(bytes: Uint8Array): unknown {
  const text = decodeUtf8(bytes);
  if (text.length === 0) return undefined;
  try {
    return JSON.parse(text, rejectPrototypeKeys);
  } catch {
    // SyntaxError, a prototype key, or a RangeError from nesting too deep for the reviver
    throw ShopError.malformedJson();
  }
}

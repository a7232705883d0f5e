import { describe, expect, it } from 'vitest';
import { decodeJsonBody, decodeUtf8, ShopError } from '../src/index.js';

const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part) : Buffer.from(part))));

function rejection(fn: () => unknown): { code: string; status: number; message: string } {
  try {
    fn();
  } catch (error) {
    if (error instanceof ShopError) return { code: error.code, status: error.status, message: error.message };
    throw error;
  }
  throw new Error('expected a ShopError');
}

describe('JSON request bodies', () => {
  it('parses UTF-8 JSON, multi-byte characters and a leading BOM included', () => {
    expect(decodeJsonBody(bytes('{"name":"Füller ✒️ 万年筆 😀","n":1}'))).toEqual({ name: 'Füller ✒️ 万年筆 😀', n: 1 });
    expect(decodeJsonBody(bytes([0xef, 0xbb, 0xbf], '{"a":1}'))).toEqual({ a: 1 });
    // a U+FFFD the client really sent is valid UTF-8
    expect(decodeJsonBody(bytes('{"a":"\uFFFD"}'))).toEqual({ a: '\uFFFD' });
  });

  it('hands primitives and arrays to validation, and reads an empty body as no body', () => {
    expect(decodeJsonBody(bytes('"pen"'))).toBe('pen');
    expect(decodeJsonBody(bytes('[1]'))).toEqual([1]);
    expect(decodeJsonBody(bytes('null'))).toBeNull();
    expect(decodeJsonBody(bytes(''))).toBeUndefined();
  });

  it.each([
    ['a byte that never occurs in UTF-8', [0xff, 0xfe]],
    ['a lead byte without its continuation', [0xc3, 0x28]],
    ['an overlong encoding', [0xc0, 0xaf]],
    ['a lone surrogate', [0xed, 0xa0, 0x80]],
    ['a truncated 4-byte sequence', [0xf0, 0x9f, 0x98]],
  ])('refuses %s with 400 invalid_request instead of reading it as U+FFFD', (_label, bad) => {
    const body = bytes('{"name":"', bad, '"}');
    expect(rejection(() => decodeJsonBody(body))).toEqual({ code: 'invalid_request', status: 400, message: 'The request body is not valid UTF-8.' });
    expect(rejection(() => decodeUtf8(body)).message).toBe('The request body is not valid UTF-8.');
  });

  it.each([
    ['truncated JSON', '{"name":'],
    ['whitespace only', '  \n'],
    ['a __proto__ key', '{"a":1,"__proto__":{"admin":true}}'],
    ['an escaped __proto__ key', '{"\\u005f_proto__":{"admin":true}}'],
    ['a constructor.prototype key', '{"constructor":{"prototype":{"admin":true}}}'],
    ['nesting too deep', `${'['.repeat(100_000)}${']'.repeat(100_000)}`],
  ])('refuses %s with 400 invalid_request (malformed JSON)', (_label, text) => {
    expect(rejection(() => decodeJsonBody(bytes(text)))).toEqual({ code: 'invalid_request', status: 400, message: 'The request body is not valid JSON.' });
  });
});

import { describe, expect, it } from 'vitest';
import { parseFailAt, parseId, parseNewItem, parseNewOrder, parseSleepMs, ShopError } from '../src/index.js';

function rejection(fn: () => unknown): { code: string; status: number } {
  try {
    fn();
  } catch (error) {
    if (error instanceof ShopError) return { code: error.code, status: error.status };
    throw error;
  }
  throw new Error('expected a ShopError');
}

describe('request validation', () => {
  it('accepts a well-formed item and keeps its fields', () => {
    expect(parseNewItem({ name: 'pen', priceCents: 0, stock: 5, extra: true })).toEqual({ name: 'pen', priceCents: 0, stock: 5 });
    expect(parseNewItem({ name: 'x'.repeat(200), priceCents: 2_147_483_647, stock: 0 }).name).toHaveLength(200);
  });

  it.each([
    ['a non-object body', null],
    ['an array body', [{ name: 'pen', priceCents: 1, stock: 1 }]],
    ['a missing name', { priceCents: 1, stock: 1 }],
    ['an empty name', { name: '', priceCents: 1, stock: 1 }],
    ['a blank name', { name: '   ', priceCents: 1, stock: 1 }],
    ['a 201-character name', { name: 'x'.repeat(201), priceCents: 1, stock: 1 }],
    ['a negative price', { name: 'pen', priceCents: -1, stock: 1 }],
    ['a fractional price', { name: 'pen', priceCents: 1.5, stock: 1 }],
    ['a price as a string', { name: 'pen', priceCents: '1', stock: 1 }],
    ['a price beyond int4', { name: 'pen', priceCents: 2_147_483_648, stock: 1 }],
    ['a negative stock', { name: 'pen', priceCents: 1, stock: -3 }],
    ['a null stock', { name: 'pen', priceCents: 1, stock: null }],
  ])('rejects an item with %s as invalid_request', (_label, body) => {
    expect(rejection(() => parseNewItem(body))).toEqual({ code: 'invalid_request', status: 400 });
  });

  it('bounds order quantity to 1..1000 and item ids to positive integers', () => {
    expect(parseNewOrder({ itemId: 1, quantity: 1000 })).toEqual({ itemId: 1, quantity: 1000 });
    for (const body of [{ itemId: 1, quantity: 0 }, { itemId: 1, quantity: 1001 }, { itemId: 0, quantity: 1 }, { itemId: '1', quantity: 1 }, { quantity: 1 }]) {
      expect(rejection(() => parseNewOrder(body)).code).toBe('invalid_request');
    }
  });

  it('reads path ids as plain positive decimal integers', () => {
    expect(parseId('42')).toBe(42);
    for (const raw of ['0', '-1', '1.5', 'abc', '01', '1e3', ' 1', '99999999999', '', undefined]) {
      expect(rejection(() => parseId(raw)).code, String(raw)).toBe('invalid_request');
    }
  });

  it('accepts sleeps of 0..10000 ms only', () => {
    expect(parseSleepMs('0')).toBe(0);
    expect(parseSleepMs('10000')).toBe(10_000);
    for (const raw of ['10001', '-1', 'x', '', undefined, ['1', '2'], '1.5']) {
      expect(rejection(() => parseSleepMs(raw)).code, String(raw)).toBe('invalid_request');
    }
  });

  it('ignores x-fail-at unless faults are enabled, and rejects unknown points', () => {
    expect(parseFailAt('commit', false)).toBeUndefined();
    expect(parseFailAt('commit', true)).toBe('commit');
    expect(parseFailAt(undefined, true)).toBeUndefined();
    expect(rejection(() => parseFailAt('later', true)).code).toBe('invalid_request');
  });
});

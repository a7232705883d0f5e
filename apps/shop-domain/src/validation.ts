import { ShopError } from './errors.js';

/** Largest value of a PostgreSQL `integer` column. */
export const MAX_INT = 2_147_483_647;
export const MAX_SLEEP_MS = 10_000;
export const FAIL_POINTS = ['after-stock', 'after-order', 'after-payment', 'commit'] as const;
export type FailPoint = (typeof FAIL_POINTS)[number];

export interface NewItem {
  name: string;
  priceCents: number;
  stock: number;
}

export interface NewOrder {
  itemId: number;
  quantity: number;
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw ShopError.bodyNotObject();
  }
  return body as Record<string, unknown>;
}

function integerField(body: Record<string, unknown>, field: string, min: number, max: number): number {
  const value = body[field];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw ShopError.invalidRequest(`${field} must be an integer from ${min} to ${max}.`);
  }
  return value;
}

/** `POST /items` body: name 1-200 characters, priceCents and stock integers >= 0. */
export function parseNewItem(body: unknown): NewItem {
  const b = objectBody(body);
  const name = b.name;
  if (typeof name !== 'string' || name.trim().length === 0 || name.length > 200) {
    throw ShopError.invalidRequest('name must be a string of 1 to 200 characters.');
  }
  return { name, priceCents: integerField(b, 'priceCents', 0, MAX_INT), stock: integerField(b, 'stock', 0, MAX_INT) };
}

/** `POST /orders` body: itemId a positive integer, quantity 1-1000. */
export function parseNewOrder(body: unknown): NewOrder {
  const b = objectBody(body);
  return { itemId: integerField(b, 'itemId', 1, MAX_INT), quantity: integerField(b, 'quantity', 1, 1000) };
}

/** A path id: a positive integer written in plain decimal digits. */
export function parseId(raw: unknown, what = 'id'): number {
  const text = typeof raw === 'string' ? raw : '';
  const id = /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(id) || id > MAX_INT) throw ShopError.invalidRequest(`${what} must be a positive integer.`);
  return id;
}

/** `GET /sleep?ms=N`: N an integer from 0 to 10000. */
export function parseSleepMs(raw: unknown): number {
  const text = Array.isArray(raw) ? undefined : raw;
  const ms = typeof text === 'string' && /^(0|[1-9][0-9]{0,4})$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(ms) || ms > MAX_SLEEP_MS) throw ShopError.invalidRequest(`ms must be an integer from 0 to ${MAX_SLEEP_MS}.`);
  return ms;
}

/** The `x-fail-at` header; ignored (undefined) unless faults are enabled. */
export function parseFailAt(raw: unknown, faultsEnabled: boolean): FailPoint | undefined {
  if (!faultsEnabled || raw === undefined || raw === '') return undefined;
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (typeof value === 'string' && (FAIL_POINTS as readonly string[]).includes(value)) return value as FailPoint;
  throw ShopError.invalidRequest(`x-fail-at must be one of ${FAIL_POINTS.join(', ')}.`);
}

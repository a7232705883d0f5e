import { randomUUID } from 'node:crypto';

/** A stand-in for a payment provider: every charge succeeds with a fresh id like `pay_3f2a...`. */
export class FakePaymentGateway {
  async charge(_orderId: number, _amountCents: number): Promise<string> {
    return `pay_${randomUUID().replaceAll('-', '')}`;
  }
}

/** The shape of the ids `FakePaymentGateway` hands out. */
export const PAYMENT_ID_PATTERN = /^pay_[0-9a-f]{32}$/;

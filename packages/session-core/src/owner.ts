import type { Transaction } from 'sequelize';
import type { Session } from './session.js';

const OWNER = Symbol('sessionlocal.session');

type Owned = Transaction & { parent?: Transaction; [OWNER]?: Session };

/** Mark `transaction` as the root transaction of `session`. */
export function setOwner(transaction: Transaction, session: Session): void {
  (transaction as Owned)[OWNER] = session;
}

/** The session that owns a transaction (or the root of a savepoint), if any. */
export function ownerOf(transaction: Transaction): Session | undefined {
  let t = transaction as Owned;
  while (t.parent) t = t.parent as Owned;
  return t[OWNER];
}

/** The root (session-level) transaction of a savepoint chain. */
export function rootOf(transaction: Transaction): Transaction {
  let t = transaction as Owned;
  while (t.parent) t = t.parent as Owned;
  return t;
}

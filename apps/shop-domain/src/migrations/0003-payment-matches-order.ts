import type { MigrationFn } from '../migrate.js';

/**
 * Every payment must charge exactly its order's total. Checked at COMMIT (a deferred
 * constraint trigger), so order and payment rows can be written in any order inside one
 * transaction. `x-fail-at: commit` breaks this rule on purpose: only the COMMIT fails.
 */
export const up: MigrationFn = async ({ context: db }) => {
  await db.query(`
    CREATE FUNCTION shop_payment_matches_order() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = NEW.order_id AND o.total_cents = NEW.amount_cents) THEN
        RAISE EXCEPTION 'payment % does not match the total of order %', NEW.payment_id, NEW.order_id
          USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_matches_order';
      END IF;
      RETURN NULL;
    END $$`);
  await db.query(`
    CREATE CONSTRAINT TRIGGER payment_matches_order
      AFTER INSERT OR UPDATE ON payments
      DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW EXECUTE FUNCTION shop_payment_matches_order()`);
};

export const down: MigrationFn = async ({ context: db }) => {
  await db.query('DROP TRIGGER payment_matches_order ON payments');
  await db.query('DROP FUNCTION shop_payment_matches_order()');
};

import type { MigrationFn } from '../migrate.js';

export const up: MigrationFn = async ({ context: db }) => {
  await db.query(`
    CREATE TABLE orders (
      id          serial PRIMARY KEY,
      item_id     integer NOT NULL REFERENCES items (id),
      quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
      total_cents bigint NOT NULL CHECK (total_cents >= 0),
      status      varchar(20) NOT NULL CHECK (status IN ('pending', 'paid')),
      created_at  timestamptz NOT NULL DEFAULT now(),
      updated_at  timestamptz NOT NULL DEFAULT now()
    )`);
  await db.query('CREATE INDEX orders_item_id_idx ON orders (item_id)');
  await db.query(`
    CREATE TABLE payments (
      id           serial PRIMARY KEY,
      order_id     integer NOT NULL UNIQUE REFERENCES orders (id) DEFERRABLE INITIALLY DEFERRED,
      payment_id   varchar(64) NOT NULL UNIQUE,
      amount_cents bigint NOT NULL CHECK (amount_cents >= 0),
      created_at   timestamptz NOT NULL DEFAULT now(),
      updated_at   timestamptz NOT NULL DEFAULT now()
    )`);
};

export const down: MigrationFn = async ({ context: db }) => {
  await db.query('DROP TABLE payments');
  await db.query('DROP TABLE orders');
};

import type { MigrationFn } from '../migrate.js';

export const up: MigrationFn = async ({ context: db }) => {
  await db.query(`
    CREATE TABLE items (
      id          serial PRIMARY KEY,
      name        varchar(200) NOT NULL CHECK (length(btrim(name)) > 0),
      price_cents integer NOT NULL CHECK (price_cents >= 0),
      stock       integer NOT NULL CHECK (stock >= 0),
      created_at  timestamptz NOT NULL DEFAULT now(),
      updated_at  timestamptz NOT NULL DEFAULT now()
    )`);
};

export const down: MigrationFn = async ({ context: db }) => {
  await db.query('DROP TABLE items');
};

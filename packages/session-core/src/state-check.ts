import type { PooledConnection } from './engine.js';

/**
 * Settings the driver and the pooler set themselves on every connection: Sequelize's connect
 * (`client_min_messages`, `TimeZone`, `standard_conforming_strings`) and the parameters PgBouncer
 * tracks per client and restores itself (`client_encoding`, `DateStyle`, `TimeZone`,
 * `standard_conforming_strings`, `application_name`).
 */
const MANAGED = ['client_min_messages', 'timezone', 'datestyle', 'client_encoding', 'standard_conforming_strings', 'application_name', 'intervalstyle', 'extra_float_digits'];

/**
 * One round trip, inside the transaction, before COMMIT (`sessionStateCheck: 'before-commit'`):
 * what the backend holds that outlives the transaction. Session-level advisory locks are released
 * here (they must not outlive the request; `pg_advisory_unlock_all` leaves `_xact_` locks), and
 * counted as the locks before minus the transaction-level ones after. A `LISTEN` of this
 * transaction only takes effect at COMMIT (`pg_listening_channels()` does not show it yet): it is
 * undone by `UNLISTEN *` in the same transaction, not reported.
 */
const CHECK = `SELECT ARRAY(SELECT name FROM pg_settings WHERE source = 'session' AND setting IS DISTINCT FROM reset_val AND lower(name) <> ALL (ARRAY['${MANAGED.join("','")}']) ORDER BY name) AS settings,
 (SELECT CASE WHEN current_user <> usename OR session_user <> usename THEN current_user::text END FROM pg_stat_activity WHERE pid = pg_backend_pid()) AS role,
 (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks,
 ARRAY(SELECT pg_listening_channels()::text) AS channels,
 ARRAY(SELECT name FROM pg_prepared_statements WHERE from_sql ORDER BY name) AS prepared,
 ARRAY(SELECT relname::text FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY relname) AS temps,
 ARRAY(SELECT name FROM pg_cursors WHERE is_holdable ORDER BY name) AS cursors;
SELECT pg_advisory_unlock_all();
UNLISTEN *;
SELECT count(*)::int AS locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()`;

interface Found {
  settings: string[];
  /** `SET ROLE` / `SET SESSION AUTHORIZATION` (hidden from `pg_settings`): the role now in effect, when not the login role. */
  role: string | null;
  locks: number;
  channels: string[];
  prepared: string[];
  temps: string[];
  cursors: string[];
}

/**
 * Run the check on the session's connection, inside its open transaction. Returns what was left
 * (one entry per item, e.g. `setting search_path`, `1 session advisory lock`), empty when clean.
 * When something was left it also removes what a ROLLBACK would not: SQL prepared statements
 * (`DEALLOCATE ALL`); the caller then rolls back, which undoes the rest made in this transaction
 * (settings, `LISTEN`, temp tables, cursors `WITH HOLD`).
 */
export async function sessionStateLeft(connection: PooledConnection): Promise<string[]> {
  const results = (await connection.query(CHECK)) as unknown as Array<{ rows: Array<Record<string, unknown>> }>;
  const found = results[0]!.rows[0] as unknown as Found;
  const xactLocks = (results[3]!.rows[0] as { locks: number }).locks;
  const sessionLocks = found.locks - xactLocks;
  const left = [
    ...found.settings.map((name) => `setting ${name}`),
    ...(found.role ? [`role ${found.role}`] : []),
    ...(sessionLocks > 0 ? [`${sessionLocks} session advisory lock${sessionLocks > 1 ? 's' : ''}`] : []),
    ...found.channels.map((name) => `LISTEN ${name}`),
    ...found.prepared.map((name) => `prepared statement ${name}`),
    ...found.temps.map((name) => `temp table ${name}`),
    ...found.cursors.map((name) => `cursor WITH HOLD ${name}`),
  ];
  if (found.prepared.length > 0) await connection.query('DEALLOCATE ALL');
  return left;
}

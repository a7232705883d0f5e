import type { Session } from './session.js';

/**
 * Read-your-writes, the session side: which statements count as writes, and the COMMIT that
 * returns its WAL position in the same round trip.
 */

/** Statements that cannot write (plain reads and savepoint control); anything else may. */
const READ = /^\s*(?:SELECT|SHOW|EXPLAIN|VALUES|TABLE|SAVEPOINT|RELEASE|ROLLBACK\s+TO)\b/i;
/** A SELECT that still writes: `SELECT ... INTO`, sequences, row locks (WAL-logged), `pg_advisory_xact_lock` is no write. */
const WRITING_SELECT = /\b(?:INTO|nextval|setval|FOR\s+(?:UPDATE|NO\s+KEY\s+UPDATE|SHARE|KEY\s+SHARE))\b/i;

/** `EXPLAIN ANALYZE` runs the statement it explains. */
const EXPLAIN_ANALYZE = /^\s*EXPLAIN\b[^;]*\bANALY[SZ]E\b/i;

/**
 * @internal Whether `sql` may write. Conservative for SQL text: every statement of a
 * multi-statement text is looked at (`SELECT 1; UPDATE …` writes), and `EXPLAIN ANALYZE` counts
 * as a write; a SELECT calling a function that writes is not seen.
 */
export function mayWrite(sql: string): boolean {
  if (!sql) return true;
  // a `;` inside a literal only splits a read into pieces that look like writes: one more LSN fetched
  if (sql.includes(';')) return sql.split(';').some((part) => part.trim() !== '' && statementMayWrite(part));
  return statementMayWrite(sql);
}

function statementMayWrite(sql: string): boolean {
  return !READ.test(sql) || (/^\s*SELECT\b/i.test(sql) && WRITING_SELECT.test(sql)) || EXPLAIN_ANALYZE.test(sql);
}

/**
 * COMMIT, then the WAL insert position, in one simple-protocol round trip. The insert position
 * after COMMIT is at or past the end of the commit record (even with `synchronous_commit = off`,
 * where the write position may lag behind it), so a replica that replayed it sees the commit.
 */
export const COMMIT_RETURNING_LSN = 'COMMIT; SELECT pg_current_wal_insert_lsn()::text AS lsn';

/** @internal Whether the commit of `session` must return its WAL position. */
export function wantsCommitLsn(session: Session): boolean {
  const { options } = session;
  return options.readYourWrites !== undefined && !options.readOnly && session.wrote && session.engine.replicaSet !== undefined;
}

/** @internal The LSN from the results of `COMMIT_RETURNING_LSN`. */
export function lsnFromCommitResults(results: unknown): string | undefined {
  const list = Array.isArray(results) ? results : [results];
  const last = list[list.length - 1] as { rows?: Array<{ lsn?: unknown }> } | undefined;
  const lsn = last?.rows?.[0]?.lsn;
  return typeof lsn === 'string' ? lsn : undefined;
}

/**
 * Whether a statement's text may leave session-level state on its connection (state that
 * outlives the transaction and would reach the next user of the pooled connection). Conservative:
 * a `true` costs one destroyed connection, a `false` must be right. Comments are stripped and
 * every statement of a multi-statement text is checked.
 *
 * Covered: `SET` (not `LOCAL`/`TRANSACTION`/`CONSTRAINTS`), `RESET`, `SET ROLE`/`SESSION
 * AUTHORIZATION`, `set_config(…)` whose third argument is not the literal `true` (anywhere: CTEs,
 * sub-selects), session-level advisory locks (`pg_advisory_lock*`, `pg_try_advisory_lock*`,
 * not the `_xact_` ones), `LISTEN`, `PREPARE`, `DECLARE … WITH HOLD`, `CREATE TEMP`/`TEMPORARY`,
 * `DO` blocks (their body can do any of these). Not covered: a function of yours that does one of
 * these inside (`SELECT my_function()`): its text shows nothing (docs/semantics.md, rule 13).
 */
export function mayLeaveSessionState(sql: string): boolean {
  const text = sql.includes('--') || sql.includes('/*') ? stripComments(sql) : sql;
  if (SET_CONFIG_NOT_LOCAL.test(text) || SESSION_ADVISORY_LOCK.test(text)) return true;
  return text.includes(';') ? text.split(';').some((statement) => SESSION_STATEMENT.test(statement)) : SESSION_STATEMENT.test(text);
}

const SESSION_STATEMENT = /^\s*(RESET\b|SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|LISTEN\b|PREPARE\b|DECLARE\b[\s\S]*\bWITH\s+HOLD\b|CREATE\s+(GLOBAL\s+|LOCAL\s+)?(TEMP|TEMPORARY)\b|DO\b)/i;
/** `set_config(name, value, x)` with `x` anything but the literal `true`. */
const SET_CONFIG_NOT_LOCAL = /\bset_config\s*\((?![^()]*,[^()]*,\s*true\s*\))/i;
const SESSION_ADVISORY_LOCK = /\bpg_(try_)?advisory_lock(_shared)?\s*\(/i;

/** Remove `-- …` and (nested) `/* … *\/` comments; string literals are left alone (a false alarm there only costs a connection). */
function stripComments(sql: string): string {
  let out = '';
  let depth = 0;
  for (let i = 0; i < sql.length; i++) {
    const two = sql.slice(i, i + 2);
    if (depth === 0 && two === '--') {
      const end = sql.indexOf('\n', i);
      if (end === -1) break;
      i = end;
      out += '\n';
    } else if (two === '/*') {
      depth++;
      i++;
    } else if (depth > 0 && two === '*/') {
      depth--;
      i++;
      if (depth === 0) out += ' ';
    } else if (depth === 0) {
      out += sql[i];
    }
  }
  return out;
}

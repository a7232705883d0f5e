/** Cheap first look: a text without any of these words cannot leave session-level state (`OFFSET`, `settings` do not count). */
const MAYBE_STATE = /\bset\b|set_config|\breset\b|listen|prepare|declare|temp|\bdo\b|advisory/i;
/** Cheap first look for transaction control. */
const MAYBE_CONTROL = /commit|\bend\b|abort|begin|rollback|start\s+transaction|prepare\s+transaction/i;

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
 * `SELECT … INTO TEMP`, `DO` blocks (their body can do any of these). Not covered: a function of yours that does one of
 * these inside (`SELECT my_function()`): its text shows nothing (docs/semantics.md, rule 13).
 */
export function mayLeaveSessionState(sql: string): boolean {
  if (!MAYBE_STATE.test(sql)) return false;
  // set_config's arguments are literals: look for it in the text with comments only removed
  if (SET_CONFIG_NOT_LOCAL.test(withoutComments(sql)) || SESSION_ADVISORY_LOCK.test(sql)) return true;
  const text = skeleton(sql);
  return text.includes(';') ? text.split(';').some((statement) => SESSION_STATEMENT.test(statement)) : SESSION_STATEMENT.test(text);
}

/** Comments removed, literals kept (`set_config('a', 'b', false)` reads its arguments). */
function withoutComments(sql: string): string {
  return sql.includes('--') || sql.includes('/*') ? sql.replace(/\/\*[\s\S]*?\*\/|--[^\n]*/g, ' ') : sql;
}

const SESSION_STATEMENT =
  /^\s*(SELECT\b[\s\S]*\bINTO\s+(TEMP|TEMPORARY)\b|RESET\b|SET\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)|LISTEN\b|PREPARE\b|DECLARE\b[\s\S]*\bWITH\s+HOLD\b|CREATE\s+(GLOBAL\s+|LOCAL\s+)?(TEMP|TEMPORARY)\b|DO\b)/i;
/** `set_config(name, value, x)` with `x` anything but the literal `true`. */
const SET_CONFIG_NOT_LOCAL = /\bset_config\s*\((?![^()]*,[^()]*,\s*true\s*\))/i;
const SESSION_ADVISORY_LOCK = /\bpg_(try_)?advisory_lock(_shared)?\s*\(/i;

/**
 * The statement text with comments removed and every literal (`'…'` with `''` escapes, `E'…'`
 * with backslash escapes, `$tag$…$tag$`, `"identifiers"`) replaced by an empty one of its kind:
 * what is left is SQL keywords and punctuation, so a `;` or a keyword inside data never counts.
 */
export function skeleton(sql: string): string {
  let out = '';
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') depth++;
        else if (sql[i] === '*' && sql[i + 1] === '/') depth--;
        else {
          i++;
          continue;
        }
        i += 2;
      }
      out += ' ';
    } else if (c === "'") {
      const escapes = /[eE]/.test(sql[i - 1] ?? '') && !/[\w$]/.test(sql[i - 2] ?? '');
      i++;
      while (i < n) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
      out += "''";
    } else if (c === '"') {
      const end = sql.indexOf('"', i + 1);
      i = end === -1 ? n : end + 1;
      out += '""';
    } else if (c === '$' && !/[\w$]/.test(sql[i - 1] ?? '')) {
      const tag = /^\$([A-Za-z_][\w]*)?\$/.exec(sql.slice(i));
      if (!tag) {
        out += c;
        i++;
        continue;
      }
      const end = sql.indexOf(tag[0], i + tag[0].length);
      i = end === -1 ? n : end + tag[0].length;
      out += '$$$$';
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const TRANSACTION_CONTROL = /^\s*(COMMIT|END|ABORT|BEGIN|START\s+TRANSACTION|ROLLBACK(?!\s+(TO|PREPARED)\b)|PREPARE\s+TRANSACTION|COMMIT\s+PREPARED|ROLLBACK\s+PREPARED)\b/i;

/**
 * The transaction-control statement in a statement's text, if any (`COMMIT`, `ROLLBACK` — not
 * `ROLLBACK TO SAVEPOINT` —, `BEGIN`, `END`, `ABORT`, `START TRANSACTION`, two-phase commands).
 * Sent raw inside a session it would end or nest the session's transaction behind its back, and
 * the statements after it would autocommit.
 */
export function transactionControlIn(sql: string): string | undefined {
  if (!MAYBE_CONTROL.test(sql)) return undefined;
  const text = skeleton(sql);
  for (const statement of text.includes(';') ? text.split(';') : [text]) {
    const match = TRANSACTION_CONTROL.exec(statement);
    if (match) return match[1]!.toUpperCase().replace(/\s+/g, ' ');
  }
  return undefined;
}

/** Cheap first look for a read-only transaction made read-write. */
const MAYBE_READ_WRITE = /read\s+write|transaction_read_only|\breset\b/i;
const READ_WRITE_SWITCH = /^\s*(SET\s+(?:LOCAL\s+|SESSION\s+)?TRANSACTION\b.*\bREAD\s+WRITE\b|SET\s+(?:LOCAL\s+|SESSION\s+)?transaction_read_only\b|RESET\s+(?:transaction_read_only|ALL)\b)/is;

/**
 * The statement in a statement's text that would make a read-only transaction read-write, if any
 * (`SET TRANSACTION … READ WRITE`, `SET [LOCAL] transaction_read_only`, `RESET transaction_read_only`,
 * `RESET ALL`): PostgreSQL allows it before the transaction's first query, so a read-only session
 * served by the primary could write.
 */
export function readWriteSwitchIn(sql: string): string | undefined {
  if (!MAYBE_READ_WRITE.test(sql)) return undefined;
  const text = skeleton(sql);
  for (const statement of text.includes(';') ? text.split(';') : [text]) {
    const match = READ_WRITE_SWITCH.exec(statement);
    if (match) return match[1]!.trim().toUpperCase().replace(/\s+/g, ' ');
  }
  return undefined;
}

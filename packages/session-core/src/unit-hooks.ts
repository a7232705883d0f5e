import type { Transaction } from 'sequelize';
import type { Scope } from './scope.js';

type Hook = () => unknown;
type Unit = Transaction & { parent?: Transaction; finished?: string };

/** The `afterCommit` / `afterRollback` hooks registered through the session inside one nested unit. */
export interface UnitHooks {
  commit: Hook[];
  rollback: Hook[];
}

const registered = new WeakMap<Transaction, UnitHooks>();

/**
 * §2 rule 8: the nested unit (`beginNested`, `sequelize.transaction(cb)`) of the cycle whose root
 * transaction is `root` that the current async context runs in, or `undefined` (the session
 * itself). A unit that already ended hands over to the nearest enclosing one still open.
 */
export function unitInScope(scope: Scope | undefined, root: Transaction | undefined): Transaction | undefined {
  let unit = scope?.transaction as Unit | null | undefined;
  if (!unit || !root) return undefined;
  let top = unit;
  while (top.parent) top = top.parent as Unit;
  if (top !== root) return undefined; // another session's savepoint, or one of an ended cycle
  while (unit.parent && unit.finished) unit = unit.parent as Unit;
  return unit.parent ? unit : undefined;
}

/** Register `fn` on `unit` (it follows the unit: moved up on release, dropped or run on rollback). */
export function addUnitHook(unit: Transaction, kind: keyof UnitHooks, fn: Hook): void {
  let hooks = registered.get(unit);
  if (!hooks) {
    hooks = { commit: [], rollback: [] };
    registered.set(unit, hooks);
  }
  hooks[kind].push(fn);
}

/**
 * The unit released: its hooks move, in order, to the enclosing unit, or are handed to
 * `toSession` when the enclosing one is the session's own transaction.
 */
export function releaseUnitHooks(unit: Transaction, toSession: (hooks: UnitHooks) => void): void {
  const hooks = registered.get(unit);
  if (!hooks) return;
  registered.delete(unit);
  const parent = (unit as Unit).parent as Unit | undefined;
  if (parent?.parent) for (const kind of ['commit', 'rollback'] as const) for (const fn of hooks[kind]) addUnitHook(parent, kind, fn);
  else toSession(hooks);
}

/** The unit rolled back (or its cycle ended with it open): its hooks, taken off it. */
export function takeUnitHooks(unit: Transaction): UnitHooks | undefined {
  const hooks = registered.get(unit);
  registered.delete(unit);
  return hooks;
}

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Session } from '../src/index.js';
import { useDatabase } from './support.js';

// §2 rule 8: `session.afterCommit` / `session.afterRollback` registered inside a nested unit
// (`beginNested`, `sequelize.transaction(cb)`) follow the unit: they move up when it releases,
// and when it rolls back its commit hooks are dropped and its rollback hooks run.

const h = useDatabase();

/** A nested unit: registers hooks, runs its children one after another, then releases or throws. */
interface Unit {
  via: 'beginNested' | 'transaction';
  children: Unit[];
  throws: boolean;
}

const unitArb: fc.Arbitrary<Unit> = fc.letrec<{ unit: Unit }>((tie) => ({
  unit: fc.record({
    via: fc.constantFrom<Unit['via']>('beginNested', 'transaction'),
    children: fc.oneof({ depthSize: 'small', maxDepth: 3 }, fc.constant<Unit[]>([]), fc.array(tie('unit') as fc.Arbitrary<Unit>, { maxLength: 2 })),
    throws: fc.boolean(),
  }),
})).unit;

class Undo extends Error {}

/** Run the unit under `db`, naming each hook by the unit's path. */
async function runUnit(db: Session, unit: Unit, path: string): Promise<void> {
  const body = async () => {
    db.afterCommit(() => void fired.push(`commit ${path}`));
    db.afterRollback(() => void fired.push(`rollback ${path}`));
    await h.engine.sequelize.query('SELECT 1');
    for (const [i, child] of unit.children.entries()) await runUnit(db, child, `${path}.${i}`).catch((e) => (e instanceof Undo ? undefined : Promise.reject(e)));
    // registered after the children ended: still this unit's
    db.afterCommit(() => void fired.push(`commit ${path} late`));
    if (unit.throws) throw new Undo(path);
  };
  if (unit.via === 'beginNested') await db.beginNested(body);
  else await h.engine.sequelize.transaction(body);
}

/** Whether every unit on the way from the root to `path` released. */
function released(root: Unit[], path: string): boolean {
  const steps = path.split('.').slice(1).map(Number);
  let units = root;
  for (const step of steps) {
    const unit = units[step]!;
    if (unit.throws) return false;
    units = unit.children;
  }
  return true;
}

const fired: string[] = [];

describe('session hooks registered inside a nested unit follow the unit (§2 rule 8)', () => {
  it('a rolled-back unit drops its afterCommit hooks and runs its afterRollback hooks once; a released one hands both up (generated trees, depth up to 3)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(unitArb, { minLength: 1, maxLength: 2 }), fc.boolean(), async (units, outerCommits) => {
        fired.length = 0;
        await h.SessionLocal.begin(async (db) => {
          db.afterCommit(() => void fired.push('commit r'));
          for (const [i, unit] of units.entries()) await runUnit(db, unit, `r.${i}`).catch((e) => (e instanceof Undo ? undefined : Promise.reject(e)));
          if (!outerCommits) throw new Undo('outer');
        }).catch((e) => (e instanceof Undo ? undefined : Promise.reject(e)));
        // the model: a hook of unit P runs after COMMIT iff every unit from the root to P released and the outer
        // transaction committed; its afterRollback runs exactly once otherwise
        const want: string[] = [];
        const walk = (list: Unit[], prefix: string) => {
          for (const [i, unit] of list.entries()) {
            const path = `${prefix}.${i}`;
            const commits = released(units, path) && outerCommits;
            if (commits) want.push(`commit ${path}`, `commit ${path} late`);
            else want.push(`rollback ${path}`);
            walk(unit.children, path);
          }
        };
        walk(units, 'r');
        if (outerCommits) want.push('commit r');
        expect([...fired].sort()).toEqual(want.sort());
      }),
      { numRuns: 60, seed: 20261201 },
    );
  });

  it('afterRollback of a unit runs when the unit rolls back, before the outer transaction ends; afterCommit registered there never runs', async () => {
    const seen: string[] = [];
    await h.SessionLocal.begin(async (db) => {
      await db
        .beginNested(async () => {
          await db.beginNested(async () => {
            db.afterCommit(() => void seen.push('inner commit'));
            db.afterRollback(() => void seen.push('inner rollback'));
          });
          db.afterRollback(() => void seen.push('middle rollback'));
          throw new Error('undo the middle unit');
        })
        .catch(() => undefined);
      seen.push('outer goes on');
      db.afterCommit(() => void seen.push('outer commit'));
    });
    expect(seen).toEqual(['inner rollback', 'middle rollback', 'outer goes on', 'outer commit']);
  });

  it('a unit released inside a unit that rolls back: its hooks are dropped with the enclosing one (afterRollback runs)', async () => {
    const seen: string[] = [];
    await h.SessionLocal.begin(async (db) => {
      await h.engine.sequelize
        .transaction(async () => {
          await h.engine.sequelize.transaction(async () => {
            db.afterCommit(() => void seen.push('deep commit'));
            db.afterRollback(() => void seen.push('deep rollback'));
          });
          throw new Error('undo');
        })
        .catch(() => undefined);
    });
    expect(seen).toEqual(['deep rollback']);
  });
});

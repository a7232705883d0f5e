import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTERS } from '../src/frameworks.js';
import { runEverywhere } from '../src/fuzz.js';
import { AdapterHarness, recordUncaught } from '../src/harness.js';
import { REGRESSIONS } from '../src/regressions.js';

// Each counterexample the fuzzer found on main, replayed on the three adapters. While `fixed: false`
// the test expects the violation (`it.fails`): it proves the oracle catches the defect, and it
// starts failing when the fix lands, so that the entry is flipped to `fixed: true`.
describe('fuzzer regressions (issue 11)', () => {
  const harnesses = ADAPTERS.map((adapter) => new AdapterHarness(adapter));
  beforeAll(async () => {
    recordUncaught();
    await Promise.all(harnesses.map((h) => h.start()));
  });
  afterAll(async () => {
    await Promise.all(harnesses.map((h) => h.stop()));
  });

  for (const regression of REGRESSIONS) {
    (regression.fixed ? it : it.fails)(`${regression.name} (behaviour ${regression.behaviour})`, async () => {
      const violations = [];
      for (let run = 0; run < (regression.repeat ?? 1); run++) violations.push(...(await runEverywhere(harnesses, regression.program)).violations);
      expect(violations.map((v) => `invariant ${v.invariant} [${v.adapter}] ${v.rule}: ${v.detail}`)).toEqual([]);
    });
  }
});

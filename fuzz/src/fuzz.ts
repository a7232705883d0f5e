import fc from 'fast-check';
import { ADAPTERS, type AdapterName } from './frameworks.js';
import { AdapterHarness, type Observation, recordUncaught } from './harness.js';
import { hitsKnownCombination, knownBrokenFeatures } from './known-broken.js';
import { checkObservation, checkParity, type Violation } from './oracle.js';
import { type Feature, type Program, programArbitrary, programToCode } from './program.js';

export interface FuzzOptions {
  /** Programs to generate (each runs on every adapter). */
  runs: number;
  seed: number;
  /** Also generate the `KNOWN_BROKEN` features. */
  all?: boolean;
  adapters?: readonly AdapterName[];
  /** Stop after this many distinct counterexamples. */
  maxFailures?: number;
  /** Runs spent shrinking one counterexample at most. */
  shrinkBudget?: number;
  log?: (line: string) => void;
}

/** A distinct counterexample: the shrunk program and what it broke. */
export interface Counterexample {
  seed: number;
  path: string | undefined;
  program: Program;
  code: string;
  violations: Violation[];
}

export interface FuzzResult {
  programs: number;
  executions: number;
  failures: Counterexample[];
  ms: number;
  off: Feature[];
}

/** The stable key of a violation: a counterexample is new when one of its keys is. */
const keyOf = (violation: Violation) => `${violation.invariant}|${violation.adapter}|${violation.rule}`;

/** Run one program on every harness (side by side) and check the invariants. */
export async function runEverywhere(harnesses: AdapterHarness[], program: Program): Promise<{ observations: Observation[]; violations: Violation[] }> {
  const observations = await Promise.all(harnesses.map((h) => h.run(program)));
  const violations = observations.flatMap(checkObservation);
  // an uncaught error fired while the adapters ran side by side: find out which one by running them one at a time
  if (violations.some((x) => x.rule === 'process: uncaught error') && harnesses.length > 1) {
    const alone: Violation[] = [];
    for (const h of harnesses) {
      await new Promise((resolve) => setTimeout(resolve, 300)); // let what the side-by-side run left behind settle first
      alone.push(...checkObservation(await h.run(program)).filter((x) => x.rule === 'process: uncaught error'));
    }
    const rest = violations.filter((x) => x.rule !== 'process: uncaught error');
    return { observations, violations: [...rest, ...(alone.length > 0 ? alone : violations.filter((x) => x.rule === 'process: uncaught error'))] };
  }
  return { observations, violations: [...violations, ...checkParity(observations)] };
}

/** The fuzz loop: fast-check properties over handler programs; every distinct counterexample is shrunk and kept. */
export async function fuzz(options: FuzzOptions): Promise<FuzzResult> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  recordUncaught();
  const off = options.all ? new Set<Feature>() : knownBrokenFeatures();
  const arbitrary = options.all ? programArbitrary(off) : programArbitrary(off).filter((p) => !hitsKnownCombination(p));
  // Sequelize warns on every failed ROLLBACK TO SAVEPOINT of a savepoint that never began (it changes nothing for a savepoint)
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && /^Rolling back transaction .*-sp-\d+\\?"? does not exist/.test(args[0])) return;
    warn(...args);
  };
  const harnesses = (options.adapters ?? ADAPTERS).map((a) => new AdapterHarness(a));
  await Promise.all(harnesses.map((h) => h.start()));
  const known = new Set<string>();
  const failures: Counterexample[] = [];
  let programs = 0;
  let executions = 0;
  let seed = options.seed;
  try {
    while (programs < options.runs && failures.length < (options.maxFailures ?? 50)) {
      let failingSince: number | undefined;
      let lastFailure: Violation[] = [];
      const budget = options.shrinkBudget ?? 60;
      const property = fc.asyncProperty(arbitrary, async (program) => {
        if (failingSince !== undefined && executions - failingSince >= budget) return true; // shrink budget spent
        executions++;
        if (failingSince === undefined) programs++;
        if (programs % 100 === 0 && failingSince === undefined) log(`  ${programs} programs, ${failures.length} counterexamples, ${Math.round((Date.now() - started) / 1000)} s`);
        const { violations } = await runEverywhere(harnesses, program);
        const fresh = violations.filter((x) => !known.has(keyOf(x)));
        if (fresh.length === 0) return true;
        // while shrinking, only the first failure's kinds count (otherwise the shrinker wanders to another defect)
        if (failingSince !== undefined && !fresh.some((x) => lastFailure.some((y) => keyOf(y) === keyOf(x)))) return true;
        failingSince ??= executions;
        lastFailure = failingSince === executions ? fresh : fresh.filter((x) => lastFailure.some((y) => keyOf(y) === keyOf(x)));
        return false;
      });
      const details = await fc.check(property, { numRuns: options.runs - programs, seed, endOnFailure: false });
      if (!details.failed || !details.counterexample) break;
      const program = details.counterexample[0] as Program;
      for (const x of lastFailure) known.add(keyOf(x));
      const failure: Counterexample = { seed, path: details.counterexamplePath ?? undefined, program, code: programToCode(program), violations: lastFailure };
      failures.push(failure);
      log(formatCounterexample(failure, failures.length));
      seed = (seed + 1) | 0;
    }
  } finally {
    await Promise.all(harnesses.map((h) => h.stop()));
    console.warn = warn;
  }
  return { programs, executions, failures, ms: Date.now() - started, off: [...off] };
}

/** A counterexample as a readable block (program code, then each broken invariant). */
export function formatCounterexample(failure: Counterexample, n: number): string {
  const lines = [`\n#${n} seed ${failure.seed}${failure.path ? ` path ${failure.path}` : ''}`, failure.code, `// replay: pnpm fuzz --program '${JSON.stringify(failure.program)}'`];
  for (const x of failure.violations) lines.push(`  ✗ invariant ${x.invariant} [${x.adapter}] ${x.rule}: ${x.detail.replace(/\n/g, '\n      ')}`);
  return lines.join('\n');
}

/** Run one program (as printed after `replay:`) on the adapters and return what each saw and broke. */
export async function replay(program: Program, adapters: readonly AdapterName[] = ADAPTERS): Promise<{ observations: Observation[]; violations: Violation[] }> {
  recordUncaught();
  const harnesses = adapters.map((a) => new AdapterHarness(a));
  await Promise.all(harnesses.map((h) => h.start()));
  try {
    return await runEverywhere(harnesses, program);
  } finally {
    await Promise.all(harnesses.map((h) => h.stop()));
  }
}

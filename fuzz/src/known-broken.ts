import { type Feature, featuresOf, type Program } from './program.js';

/** A generator feature (or a combination: all of them in one program) that finds a listed defect. */
export interface KnownBroken {
  features: readonly Feature[];
  /** Issue 11's behaviour number(s). */
  behaviour: string;
  why: string;
}

/**
 * What the bounded run of `pnpm test` (and `pnpm fuzz` without `--all`) does not generate,
 * because it finds a listed defect of issue 11 on current main. A single feature is switched off
 * in the generator; a combination filters out the programs that have all of its features.
 * Delete an entry when its fix lands: `pnpm test` then fuzzes it too.
 */
export const KNOWN_BROKEN: readonly KnownBroken[] = [
  // empty: every defect the fuzzer found on the old main is fixed (fuzz/src/regressions.ts keeps them as named regressions)
];

/** The single features `KNOWN_BROKEN` switches off in the generator. */
export function knownBrokenFeatures(): Set<Feature> {
  return new Set(KNOWN_BROKEN.filter((k) => k.features.length === 1).map((k) => k.features[0]!));
}

/** Whether a program has every feature of a `KNOWN_BROKEN` combination. */
export function hitsKnownCombination(program: Program): boolean {
  const found = featuresOf(program);
  return KNOWN_BROKEN.some((k) => k.features.length > 1 && k.features.every((f) => found.has(f)));
}

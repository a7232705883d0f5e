import { expect, it } from 'vitest';
import { formatCounterexample, fuzz } from '../src/fuzz.js';

// The bounded run of `pnpm test`: the KNOWN_BROKEN features are off (src/known-broken.ts); `pnpm fuzz --all` runs everything.
const runs = Number(process.env.FUZZ_RUNS ?? 200);
const seed = Number(process.env.FUZZ_SEED ?? 20261201);

it(`${runs} generated handler programs keep the five invariants on Express, Koa and Fastify (seed ${seed})`, async () => {
  const result = await fuzz({ runs, seed, maxFailures: 3, shrinkBudget: 30 });
  expect(result.failures.map((failure, i) => formatCounterexample(failure, i + 1))).toEqual([]);
  expect(result.programs).toBe(runs);
}, 180_000);

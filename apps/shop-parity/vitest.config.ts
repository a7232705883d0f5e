import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Each test file starts the sample apps as real processes (`node apps/<name>/dist/main.js`):
// turbo builds them first (`test` depends on `^build`; the apps are dependencies of this package).
export default defineConfig({
  test: {
    globalSetup: [fileURLToPath(import.meta.resolve('@sessionlocal/session-core/testing/global-setup'))],
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-results/vitest.json' }]] : ['default'],
  },
});

import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// The chaos run starts its own PostgreSQL; the hostile-input tests share the embedded one of the global setup.
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

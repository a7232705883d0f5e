import { defineConfig } from 'vitest/config';
export default defineConfig({
  test: {
    globalSetup: ['@sessionlocal/session-core/testing/global-setup'],
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-results/vitest.json' }]] : ['default'],
    server: { deps: { inline: [/@sessionlocal\//] } },
  },
});

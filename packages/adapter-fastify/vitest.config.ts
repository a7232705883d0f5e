import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['@sessionlocal/session-core/testing/global-setup'],
    include: ['test/**/*.test.ts'],
    // type tests (test/*.test-d.ts) run through tsc as part of `pnpm test`
    typecheck: { enabled: true, include: ['test/**/*.test-d.ts'], tsconfig: './tsconfig.json' },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: process.env.CI ? ['default', ['json', { outputFile: 'test-results/vitest.json' }]] : ['default'],
    server: { deps: { inline: [/@sessionlocal\/session-core/] } },
  },
});

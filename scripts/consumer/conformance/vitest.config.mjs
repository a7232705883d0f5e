// The conformance suite inside the consumer project (CONSUMER_CONFORMANCE=1): the packed packages
// as npm installed them, against the framework and driver versions that CONSUMER_VERSIONS picked.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    globalSetup: ['@sessionlocal/session-core/testing/global-setup'],
    include: ['conformance/*.test.mjs'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});

// A CommonJS consumer: TypeScript >= 5.8 (module nodenext) types require() of an ESM-only package.
import core = require('@sessionlocal/session-core');
import testing = require('@sessionlocal/session-core/testing');

const engine = core.createEngine('postgres://app@127.0.0.1:5432/app');
const factory: core.SessionFactory = core.sessionmaker(engine);
const TestSession: testing.TransactionalFactory = testing.transactionalFactory(factory);
const isConfigError = (error: unknown): boolean => error instanceof core.ConfigError;
module.exports = { factory, TestSession, isConfigError };

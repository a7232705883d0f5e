export { createEngine, engineFromEnv, Engine, type EngineStats, type PingReport, type PooledConnection } from './engine.js';
export type { PoolStats, ReplicaStats, ReplicaState, ReplicaPing } from './replicas.js';
export { sessionmaker, type SessionFactory, type SessionOptions, type BeginOptions, type SessionEvents, type SessionEvent, type ResolvedSessionOptions } from './sessionmaker.js';
export { Session, type SessionState } from './session.js';
export { ISOLATION_LEVELS, type IsolationLevel, type EngineOptions, type ReplicaOptions, type EchoFunction, type SequelizeClass, type PassThroughOptions } from './config.js';
export {
  SessionLocalError,
  ConfigError,
  NoActiveSessionError,
  SessionClosedError,
  PoolTimeoutError,
  InstanceExpiredError,
  EngineDisposedError,
  CommitError,
  PartialCommitError,
  SessionStateLeftError,
  CommitOutcomeUnknownError,
  ReplyTimeoutError,
  ReplicaUnavailableError,
  type ReplicaProblem,
  TransactionAbortedError,
  TransactionEndedError,
  NestedTransactionError,
  RawTransactionControlError,
  sqlState,
  type SessionLocalErrorCode,
} from './errors.js';
/** Adapter-author API: import it from `@sessionlocal/session-core/adapter`; these root re-exports are deprecated and go in 1.0. */
export {
  RequestScope,
  openRequestScope,
  checkRequestSessionOptions,
  reopenRequestScope,
  runOutsideSession,
  runListenersInScope,
  httpErrorFor,
  type ResponseLike,
  type RequestSessionOptions,
  type RouteSessionOptions,
  type RequestOutcome,
  type RequestResult,
  type HttpError,
  type FinishMode,
} from './request-scope.js';
export { redactUrl } from './redact.js';

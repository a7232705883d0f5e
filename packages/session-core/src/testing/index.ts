export { testDatabaseUrl, createTestDatabase, type TestDatabase } from './database.js';
export { transactionalFactory, type TransactionalFactory } from './transactional-factory.js';
export { startEmbeddedPostgres, freePort, type EmbeddedDatabase } from './embedded.js';
export { startFaultProxy, type FaultProxy, type FaultMode } from './fault-proxy.js';
export { startStreamingReplica, streamingReplicaUnsupported, replicaBinaries, type StreamingReplica, type ReplicaServer } from './replica.js';

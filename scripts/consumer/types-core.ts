// Type-checked in the consumer project (module NodeNext) against the installed tarballs.
import { CommitError, createEngine, type EngineStats, PoolTimeoutError, type Session, type SessionFactory, SessionLocalError, sessionmaker } from '@sessionlocal/session-core';
import { createTestDatabase, type TestDatabase, testDatabaseUrl, transactionalFactory } from '@sessionlocal/session-core/testing';

/** `true` when T is `any`: declaration merging that silently produced `any` must fail the check. */
export type IsAny<T> = 0 extends 1 & T ? true : false;

const engine = createEngine('postgres://app:secret@127.0.0.1:5432/app', { pool: { max: 5, acquireTimeoutMs: 2000 }, statementTimeoutMs: 5000 });
export const SessionLocal: SessionFactory = sessionmaker(engine, { expireOnCommit: false });

export const unit: Promise<number> = SessionLocal.begin(
  async (db: Session) => {
    db.afterCommit(() => undefined);
    await db.beginNested(async () => undefined);
    return db.id;
  },
  { retry: { attempts: 3 } },
);

export const stats: EngineStats = engine.stats();
export const isSessionError = (error: unknown): boolean => error instanceof SessionLocalError && (error instanceof PoolTimeoutError || error instanceof CommitError);
export const database: Promise<TestDatabase> = createTestDatabase();
export const url: Promise<string> = testDatabaseUrl();
export const TestSession = transactionalFactory(SessionLocal);
export const reset: Promise<void> = TestSession.reset();

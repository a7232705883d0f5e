import { type Attributes, type BatchObservableCallback, context, type MeterProvider, metrics, type Span, SpanKind, SpanStatusCode, type TracerProvider, trace } from '@opentelemetry/api';
import { PoolTimeoutError, type Engine, type Session, type SessionFactory } from '@sessionlocal/session-core';

/** Options of `instrument`. */
export interface InstrumentOptions {
  /** Where session spans go (default: the global tracer provider). */
  tracerProvider?: TracerProvider;
  /** Where pool and session metrics go (default: the global meter provider). */
  meterProvider?: MeterProvider;
  /** `db.client.connection.pool.name` (default: `host:port/database` of the engine's URL). */
  poolName?: string;
}

/** A running instrumentation; `disable()` removes its listeners and stops its metrics. */
export interface Instrumentation {
  disable(): void;
}

/** The instrumentation scope name of the spans and metrics. */
export const INSTRUMENTATION_NAME = '@sessionlocal/otel';
const VERSION = '0.1.0';

interface Open {
  span: Span;
  /** performance.now() when the connection was acquired */
  acquiredAt: number;
  outcome: 'commit' | 'rollback' | undefined;
}

/**
 * OpenTelemetry for one `SessionLocal`: a span per session that queried (first acquire to
 * close, child of the span active at its first statement, e.g. the HTTP request's), and the
 * connection-pool metrics of the database-client semantic conventions plus commit, rollback and
 * leak counters. Off until called; needs only `@opentelemetry/api` (bring your own SDK).
 * @example
 * instrument(SessionLocal); // after the OpenTelemetry SDK is started
 */
export function instrument(factory: SessionFactory, options: InstrumentOptions = {}): Instrumentation {
  const engine = factory.engine;
  const target = describe(engine);
  const poolName = options.poolName ?? target.poolName;
  const pool = { 'db.client.connection.pool.name': poolName };
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(INSTRUMENTATION_NAME, VERSION);
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(INSTRUMENTATION_NAME, VERSION);

  const waitTime = meter.createHistogram('db.client.connection.wait_time', { unit: 's', description: 'The time it took to obtain an open connection from the pool.' });
  const useTime = meter.createHistogram('db.client.connection.use_time', { unit: 's', description: 'The time between borrowing a connection and returning it to the pool.' });
  const timeouts = meter.createCounter('db.client.connection.timeouts', {
    unit: '{timeout}',
    description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
  });
  const commits = meter.createCounter('sessionlocal.session.commits', { unit: '{commit}', description: 'Sessions committed.' });
  const rollbacks = meter.createCounter('sessionlocal.session.rollbacks', { unit: '{rollback}', description: 'Sessions rolled back (a failed COMMIT too).' });
  const leaks = meter.createCounter('sessionlocal.session.leaks', { unit: '{warning}', description: 'Leak warnings: a session held its connection longer than leakWarningMs.' });
  const count = meter.createObservableUpDownCounter('db.client.connection.count', {
    unit: '{connection}',
    description: 'The number of connections that are currently in state described by the state attribute.',
  });
  const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', { unit: '{request}', description: 'The number of current pending requests for an open connection.' });
  const max = meter.createObservableUpDownCounter('db.client.connection.max', { unit: '{connection}', description: 'The maximum number of open connections allowed.' });
  const poolMax = (engine as unknown as { options?: { pool?: { max?: number } } }).options?.pool?.max;
  const observables = poolMax !== undefined ? [count, pending, max] : [count, pending];
  const observe: BatchObservableCallback = (result) => {
    if (engine.isDisposed) return;
    const { pool: stats } = engine.stats();
    result.observe(count, stats.idle, { ...pool, 'db.client.connection.state': 'idle' });
    result.observe(count, stats.inUse, { ...pool, 'db.client.connection.state': 'used' });
    result.observe(pending, stats.waiting, pool);
    if (poolMax !== undefined) result.observe(max, poolMax, pool);
  };
  meter.addBatchObservableCallback(observe, observables);

  const open = new Map<number, Open>();
  const base: Attributes = { 'db.system.name': 'postgresql', 'db.system': 'postgresql', ...target.attributes };

  const onBegin = ({ sessionId, durationMs, readOnly, isolationLevel }: { sessionId: number; durationMs: number; readOnly: boolean; isolationLevel: string | undefined }) => {
    waitTime.record(durationMs / 1000, pool);
    if (open.has(sessionId)) return; // a later transaction of the same session: one span per session
    const resolved = { readOnly, isolationLevel };
    // no context argument: the context of the session's first statement, so the caller's span
    // (e.g. the HTTP request's) is the parent
    const span = tracer.startSpan('sessionlocal.session', {
      kind: SpanKind.INTERNAL,
      startTime: new Date(Date.now() - durationMs),
      attributes: {
        ...base,
        'sessionlocal.session.id': sessionId,
        'sessionlocal.session.read_only': resolved.readOnly,
        ...(resolved.isolationLevel && { 'sessionlocal.session.isolation_level': resolved.isolationLevel }),
        'sessionlocal.connection.wait_time_ms': durationMs,
      },
    });
    open.set(sessionId, { span, acquiredAt: performance.now(), outcome: undefined });
  };
  const onCommit = ({ sessionId, durationMs }: { sessionId: number; durationMs: number }) => {
    commits.add(1, pool);
    const entry = open.get(sessionId);
    if (!entry) return;
    entry.outcome = 'commit';
    entry.span.setAttribute('sessionlocal.session.commit_ms', durationMs);
  };
  const onRollback = ({ sessionId, reason }: { sessionId: number; durationMs: number; reason?: unknown }) => {
    rollbacks.add(1, pool);
    const entry = open.get(sessionId);
    if (!entry) return;
    entry.outcome = 'rollback';
    if (reason === undefined) return;
    // a failed COMMIT: the session was rolled back by the server
    const error = reason instanceof Error ? reason : new Error(String(reason));
    entry.span.recordException(error);
    entry.span.setAttribute('error.type', errorType(reason));
    entry.span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
  };
  const onLeak = ({ sessionId, heldMs }: { sessionId: number; heldMs: number }) => {
    leaks.add(1, pool);
    open.get(sessionId)?.span.addEvent('sessionlocal.leak', { 'sessionlocal.session.held_ms': heldMs });
  };
  const onError = ({ sessionId, error, phase }: { sessionId: number; error: unknown; phase: string }) => {
    const entry = open.get(sessionId);
    if (!entry) return;
    entry.span.recordException(error instanceof Error ? error : new Error(String(error)));
    entry.span.addEvent('sessionlocal.hook_failed', { 'sessionlocal.hook.phase': phase });
  };
  const onClose = ({ sessionId, transactions, savepoints }: { sessionId: number; transactions: number; savepoints: number }) => {
    const entry = open.get(sessionId);
    if (!entry) return; // never queried: no span
    open.delete(sessionId);
    entry.span.setAttributes({ 'sessionlocal.session.transactions': transactions, 'sessionlocal.session.savepoints': savepoints });
    useTime.record((performance.now() - entry.acquiredAt) / 1000, pool);
    entry.span.setAttribute('sessionlocal.session.outcome', entry.outcome ?? 'rollback');
    entry.span.end();
  };

  // statements run with the session's span active: pg statement spans (instrumentation-pg) are its children
  engine.setStatementWrapper(<T>(session: Session, send: () => Promise<T>): Promise<T> => {
    const entry = open.get(session.id);
    return entry ? context.with(trace.setSpan(context.active(), entry.span), send) : send();
  });

  factory.on('begin', onBegin).on('commit', onCommit).on('rollback', onRollback).on('leak', onLeak).on('error', onError).on('close', onClose);

  // Pool timeouts raise before any session event: count them, and trace them as a failed session
  // span (child of the waiting statement's span), where the engine acquires.
  const internal = engine as unknown as { acquire?: (...args: unknown[]) => Promise<unknown> };
  const acquire = internal.acquire;
  if (typeof acquire === 'function') {
    internal.acquire = async function acquireCounted(this: unknown, ...args: unknown[]) {
      const started = Date.now();
      try {
        return await acquire.apply(this, args);
      } catch (error) {
        if (error instanceof PoolTimeoutError) {
          timeouts.add(1, pool);
          const session = factory.currentOrUndefined();
          const span = tracer.startSpan('sessionlocal.session', {
            kind: SpanKind.INTERNAL,
            startTime: new Date(started),
            attributes: { ...base, ...(session && { 'sessionlocal.session.id': session.id }), 'sessionlocal.session.outcome': 'pool_timeout', 'error.type': 'PoolTimeoutError' },
          });
          span.recordException(error);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
          span.end();
        }
        throw error;
      }
    };
  }

  return {
    disable() {
      factory.off('begin', onBegin).off('commit', onCommit).off('rollback', onRollback).off('leak', onLeak).off('error', onError).off('close', onClose);
      meter.removeBatchObservableCallback(observe, observables);
      if (typeof acquire === 'function') internal.acquire = acquire;
      engine.setStatementWrapper(undefined);
      for (const entry of open.values()) entry.span.end();
      open.clear();
    },
  };
}

function describe(engine: Engine): { poolName: string; attributes: Attributes } {
  try {
    const url = new URL(engine.url);
    const database = decodeURIComponent(url.pathname.slice(1)) || 'postgres';
    const port = Number(url.port || 5432);
    return { poolName: `${url.hostname}:${port}/${database}`, attributes: { 'db.namespace': database, 'server.address': url.hostname, 'server.port': port } };
  } catch {
    return { poolName: 'sessionlocal', attributes: {} };
  }
}

function errorType(error: unknown): string {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === 'string') return code;
  return error instanceof Error ? error.name : 'Error';
}

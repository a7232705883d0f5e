// The `sessionlocal-otel` variant: the OpenTelemetry SDK as an application runs it (AsyncLocalStorage
// context manager, a batch span processor, a metric reader) with @sessionlocal/otel enabled and a
// server span per request (what @opentelemetry/instrumentation-http makes). Spans and metrics are
// produced in full and handed to exporters that drop them, so the cost measured is the
// instrumentation's, not an exporter's network I/O.
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { instrument } from '@sessionlocal/otel';

/** Spans are serialised by nobody: counted and dropped. */
class DroppingExporter {
  exported = 0;
  export(spans, done) {
    this.exported += spans.length;
    done({ code: 0 });
  }
  async shutdown() {}
  async forceFlush() {}
}

export async function startTelemetry(SessionLocal) {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter: new DroppingExporter() })] });
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const meterProvider = new MeterProvider({ readers: [new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 1000 })] });
  const instrumentation = instrument(SessionLocal, { tracerProvider, meterProvider });
  const tracer = tracerProvider.getTracer('bench-http');
  return {
    /** A server span per request, active while the framework handles it. */
    wrapListener(listener) {
      return (req, res) => {
        const span = tracer.startSpan(`${req.method} ${req.url}`);
        res.once('close', () => span.end());
        context.with(trace.setSpan(context.active(), span), () => listener(req, res));
      };
    },
    async shutdown() {
      instrumentation.disable();
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      metricExporter.reset();
    },
  };
}

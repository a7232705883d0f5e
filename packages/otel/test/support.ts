import { context, type Attributes } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type DataPoint, type Histogram, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

/** A reader that only collects on demand. */
class TestReader extends MetricReader {
  protected async onForceFlush(): Promise<void> {}
  protected async onShutdown(): Promise<void> {}
}

/** The SDK as an application would set it up, with in-memory span export and an on-demand metric reader. */
export function telemetry() {
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  const reader = new TestReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  return {
    tracerProvider,
    meterProvider,
    tracer: tracerProvider.getTracer('test'),
    /** Finished session spans, oldest first (export is asynchronous: flushed first). */
    async sessionSpans(): Promise<ReadableSpan[]> {
      await tracerProvider.forceFlush();
      return exporter.getFinishedSpans().filter((span) => span.name === 'sessionlocal.session');
    },
    async spans(): Promise<ReadableSpan[]> {
      await tracerProvider.forceFlush();
      return exporter.getFinishedSpans();
    },
    reset: () => exporter.reset(),
    /** The data points of one metric, by name. */
    async points<T = number>(name: string): Promise<Array<DataPoint<T>>> {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) throw errors[0];
      return find<T>(resourceMetrics, name);
    },
    async shutdown() {
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
      contextManager.disable();
      context.disable();
    },
  };
}

function find<T>(resourceMetrics: ResourceMetrics, name: string): Array<DataPoint<T>> {
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) if (metric.descriptor.name === name) return metric.dataPoints as Array<DataPoint<T>>;
  }
  return [];
}

/** The value of the data point whose attributes include `attributes` (a counter's sum, a gauge's value). */
export function valueAt(points: Array<DataPoint<number>>, attributes: Attributes = {}): number | undefined {
  return points.find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v))?.value;
}

export type { Histogram };

// One prom-client Registry per region (never the global default), so three regions can share a process.
import { collectDefaultMetrics, Registry } from 'prom-client';

export function createRegistry(labels: { dc: string; node: string }, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'isthmus_' });
  return registry;
}

const HTTP_DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300];

/**
 * The HTTP API's request counter and duration histogram (isthmus_http_requests_total{method,route,
 * status}, isthmus_http_request_duration_seconds{method,route}). A request adds to plain numbers
 * kept per method and route; the Prometheus series are built only when the registry is read.
 * prom-client's labelled inc() and observe() validate, join and hash the label set on every call:
 * about 1.4 µs of the 7.7 µs the app spent on an authorize request (in process, no sockets).
 */
export class HttpMetrics {
  readonly #byRoute = new Map<string, Map<string, HttpRouteSeries>>();

  constructor(registry: Registry) {
    register(registry, {
      name: 'isthmus_http_requests_total',
      help: 'HTTP API requests by method, route pattern and status.',
      type: 'counter',
      values: () => {
        const values: ExportedValue[] = [];
        for (const s of this.#all()) {
          for (const [status, value] of s.byStatus) values.push({ labels: { method: s.method, route: s.route, status: String(status) }, value });
        }
        return values;
      },
      reset: () => this.#byRoute.clear(),
    });
    register(registry, {
      name: 'isthmus_http_request_duration_seconds',
      help: 'HTTP API request duration (blocking queries included).',
      type: 'histogram',
      values: () => {
        const values: ExportedValue[] = [];
        const name = 'isthmus_http_request_duration_seconds';
        for (const s of this.#all()) {
          let cumulative = 0;
          for (let i = 0; i < HTTP_DURATION_BUCKETS.length; i++) {
            cumulative += s.buckets[i];
            values.push({ metricName: `${name}_bucket`, labels: { method: s.method, route: s.route, le: HTTP_DURATION_BUCKETS[i] }, value: cumulative });
          }
          values.push({ metricName: `${name}_bucket`, labels: { method: s.method, route: s.route, le: '+Inf' }, value: s.count });
          values.push({ metricName: `${name}_sum`, labels: { method: s.method, route: s.route }, value: s.sum });
          values.push({ metricName: `${name}_count`, labels: { method: s.method, route: s.route }, value: s.count });
        }
        return values;
      },
      reset: () => this.#byRoute.clear(),
    });
  }

  /** The series of one method and route pattern (made on first use). */
  series(method: string, route: string): HttpRouteSeries {
    let byMethod = this.#byRoute.get(route);
    if (!byMethod) this.#byRoute.set(route, (byMethod = new Map()));
    let s = byMethod.get(method);
    if (!s) byMethod.set(method, (s = new HttpRouteSeries(method, route)));
    return s;
  }

  *#all(): Iterable<HttpRouteSeries> {
    for (const byMethod of this.#byRoute.values()) yield* byMethod.values();
  }
}

export class HttpRouteSeries {
  readonly byStatus = new Map<number, number>();
  /** Per bucket, not cumulative; the +Inf bucket is `count`. */
  readonly buckets = new Float64Array(HTTP_DURATION_BUCKETS.length);
  sum = 0;
  count = 0;

  constructor(
    readonly method: string,
    readonly route: string,
  ) {}

  observe(status: number, seconds: number): void {
    this.byStatus.set(status, (this.byStatus.get(status) ?? 0) + 1);
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < HTTP_DURATION_BUCKETS.length; i++) {
      if (seconds <= HTTP_DURATION_BUCKETS[i]) {
        this.buckets[i]++;
        break;
      }
    }
  }
}

export function httpMetrics(registry: Registry): HttpMetrics {
  return new HttpMetrics(registry);
}

interface ExportedValue {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * Registers a metric whose values are computed when read. The registry reads a metric through
 * `get()` (name, help, type, values with labels, optionally a metricName per value), as for its own
 * Counter and Histogram, and adds the default labels (dc, node) itself.
 */
function register(
  registry: Registry,
  m: { name: string; help: string; type: 'counter' | 'histogram'; values: () => ExportedValue[]; reset: () => void },
): void {
  const metric = {
    name: m.name,
    help: m.help,
    type: m.type,
    aggregator: 'sum' as const,
    get: async () => ({ name: m.name, help: m.help, type: m.type, aggregator: 'sum' as const, values: m.values() }),
    reset: m.reset,
  };
  registry.registerMetric(metric as unknown as Parameters<Registry['registerMetric']>[0]);
}

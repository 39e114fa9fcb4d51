// One prom-client Registry per region (never the global default), so three regions can share a process.
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';

export function createRegistry(labels: { dc: string; node: string }, opts: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  if (opts.processMetrics !== false) collectDefaultMetrics({ register: registry, prefix: 'isthmus_' });
  return registry;
}

export interface HttpMetrics {
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'method' | 'route'>;
}

export function httpMetrics(registry: Registry): HttpMetrics {
  return {
    requests: new Counter({
      name: 'isthmus_http_requests_total',
      help: 'HTTP API requests by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'isthmus_http_request_duration_seconds',
      help: 'HTTP API request duration (blocking queries included).',
      labelNames: ['method', 'route'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 300],
      registers: [registry],
    }),
  };
}

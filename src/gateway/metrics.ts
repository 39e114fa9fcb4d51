// The gateway's Prometheus metrics, on the registry it is given (one per process or region).
// Labelled by route (`<service>.<ns>.<dc>`, `server.<dc>`; "" before a route is known).
// Per-connection figures (connections, open connections, bytes) are plain numbers per route, made
// into series when the registry is read: a labelled inc() or dec() hashes its labels on every call,
// seven times per connection here.
import { Counter, Gauge, type Registry } from 'prom-client';

export interface GatewayMetrics {
  connections: Counter<'route' | 'hop'>;
  active: Gauge<'route'>;
  bytesIn: Counter<'route'>;
  bytesOut: Counter<'route'>;
  errors: Counter<'route' | 'reason'>;
  /** The counts of one route (the same object every time for the same route and hop). */
  route(route: string, hop: string): RouteCounts;
}

/** What the gateway counts per route, read by the metrics when the registry is. */
export interface RouteCounts {
  readonly route: string;
  readonly hop: string;
  /** Connections routed (by route and hop). */
  connections: number;
  /** Connections open now (by route). */
  active: number;
  bytesIn: number;
  bytesOut: number;
}

/** Error reasons, a closed set so the label stays small. */
export type GatewayErrorReason =
  'bad_client_hello' | 'hello_timeout' | 'no_route' | 'connection_limit' | 'upstream_unreachable' | 'upstream_reset' | 'idle_timeout';

/** Counts by route, one table per registry: gateways sharing a registry (tests, an embedded one) add up. */
const countsOf = new WeakMap<Registry, Map<string, RouteCounts>>();

export function gatewayMetrics(registry: Registry): GatewayMetrics {
  let counts = countsOf.get(registry);
  if (!counts) countsOf.set(registry, (counts = new Map()));
  const table = counts;
  // Two gateways on one registry (tests, an embedded gateway) share the metrics rather than clash.
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  // A counter's series made again from the counts, each time the registry is read.
  const fromCounts = (metric: Counter<string>, value: (c: RouteCounts) => number, labels: (c: RouteCounts) => Record<string, string>) => {
    metric.reset();
    for (const c of table.values()) {
      const v = value(c);
      if (v > 0) metric.inc(labels(c), v);
    }
  };
  return {
    connections: get(
      'isthmus_gateway_connections_total',
      () =>
        new Counter({
          name: 'isthmus_gateway_connections_total',
          help: 'Connections routed by the gateway, by route and hop (gateway-ingress for this DC, gateway-egress for another).',
          labelNames: ['route', 'hop'],
          registers: [registry],
          collect() {
            fromCounts(
              this,
              (c) => c.connections,
              (c) => ({ route: c.route, hop: c.hop }),
            );
          },
        }),
    ),
    active: get(
      'isthmus_gateway_connections_active',
      () =>
        new Gauge({
          name: 'isthmus_gateway_connections_active',
          help: 'Connections open through the gateway now, by route ("" while the ClientHello is still being read).',
          labelNames: ['route'],
          registers: [registry],
          collect() {
            // Summed by route (a route has one hop; "" is counted under the hop "").
            const byRoute = new Map<string, number>();
            for (const c of table.values()) byRoute.set(c.route, (byRoute.get(c.route) ?? 0) + c.active);
            this.reset();
            for (const [route, n] of byRoute) this.set({ route }, n);
          },
        }),
    ),
    bytesIn: get(
      'isthmus_gateway_bytes_in_total',
      () =>
        new Counter({
          name: 'isthmus_gateway_bytes_in_total',
          help: 'Bytes received from clients (counted when a connection closes), by route.',
          labelNames: ['route'],
          registers: [registry],
          collect() {
            fromCounts(
              this,
              (c) => c.bytesIn,
              (c) => ({ route: c.route }),
            );
          },
        }),
    ),
    bytesOut: get(
      'isthmus_gateway_bytes_out_total',
      () =>
        new Counter({
          name: 'isthmus_gateway_bytes_out_total',
          help: 'Bytes sent to clients (counted when a connection closes), by route.',
          labelNames: ['route'],
          registers: [registry],
          collect() {
            fromCounts(
              this,
              (c) => c.bytesOut,
              (c) => ({ route: c.route }),
            );
          },
        }),
    ),
    errors: get(
      'isthmus_gateway_errors_total',
      () =>
        new Counter({
          name: 'isthmus_gateway_errors_total',
          help: 'Connections the gateway refused or lost, by route and reason.',
          labelNames: ['route', 'reason'],
          registers: [registry],
        }),
    ),
    route(route, hop) {
      const key = `${hop} ${route}`;
      let c = table.get(key);
      if (!c) table.set(key, (c = { route, hop, connections: 0, active: 0, bytesIn: 0, bytesOut: 0 }));
      return c;
    },
  };
}

// The gateway's Prometheus metrics, on the registry it is given (one per process or region).
// Labelled by route (`<service>.<ns>.<dc>`, `server.<dc>`; "" before a route is known).
import { Counter, Gauge, type Registry } from 'prom-client';

export interface GatewayMetrics {
  connections: Counter<'route' | 'hop'>;
  active: Gauge<'route'>;
  bytesIn: Counter<'route'>;
  bytesOut: Counter<'route'>;
  errors: Counter<'route' | 'reason'>;
}

/** Error reasons, a closed set so the label stays small. */
export type GatewayErrorReason = 'bad_client_hello' | 'hello_timeout' | 'no_route' | 'connection_limit' | 'upstream_unreachable' | 'upstream_reset' | 'idle_timeout';

export function gatewayMetrics(registry: Registry): GatewayMetrics {
  // Two gateways on one registry (tests, an embedded gateway) share the metrics rather than clash.
  const get = <T>(name: string, make: () => T): T => (registry.getSingleMetric(name) as T | undefined) ?? make();
  return {
    connections: get('isthmus_gateway_connections_total', () => new Counter({
      name: 'isthmus_gateway_connections_total',
      help: 'Connections routed by the gateway, by route and hop (gateway-ingress for this DC, gateway-egress for another).',
      labelNames: ['route', 'hop'],
      registers: [registry],
    })),
    active: get('isthmus_gateway_connections_active', () => new Gauge({
      name: 'isthmus_gateway_connections_active',
      help: 'Connections open through the gateway now, by route ("" while the ClientHello is still being read).',
      labelNames: ['route'],
      registers: [registry],
    })),
    bytesIn: get('isthmus_gateway_bytes_in_total', () => new Counter({
      name: 'isthmus_gateway_bytes_in_total',
      help: 'Bytes received from clients (counted when a connection closes), by route.',
      labelNames: ['route'],
      registers: [registry],
    })),
    bytesOut: get('isthmus_gateway_bytes_out_total', () => new Counter({
      name: 'isthmus_gateway_bytes_out_total',
      help: 'Bytes sent to clients (counted when a connection closes), by route.',
      labelNames: ['route'],
      registers: [registry],
    })),
    errors: get('isthmus_gateway_errors_total', () => new Counter({
      name: 'isthmus_gateway_errors_total',
      help: 'Connections the gateway refused or lost, by route and reason.',
      labelNames: ['route', 'reason'],
      registers: [registry],
    })),
  };
}

import { register, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MemoryFlowStore } from './flow-store-memory.js';
import { FlowMetrics, observeFlows } from './metrics.js';
import { flowRecord, traceId } from './testing/records.js';

describe('flow metrics', () => {
  it('counts the flows a store takes by source, destination, DC, verdict and hop, on the registry given', async () => {
    const registry = new Registry();
    const store = new MemoryFlowStore(100);
    const stop = observeFlows(store, registry);
    store.append([
      flowRecord({ from: 'web', to: 'api', hop: 'client-sidecar', durationMs: 3 }),
      flowRecord({ from: 'web', to: 'api', hop: 'server-sidecar', durationMs: 2 }),
      flowRecord({ from: 'web', to: 'api', hop: 'server-sidecar', durationMs: 2_500 }),
      flowRecord({ from: 'web', to: 'db', hop: 'server-sidecar', verdict: 'denied', durationMs: 0 }),
      flowRecord({ from: '', to: 'ghost', hop: 'gateway-ingress', dc: 'dc2', verdict: 'no_route', durationMs: 1 }),
      // A request inside a counted connection is not a connection of its own.
      flowRecord({ from: 'web', to: 'api', hop: 'server-sidecar', requestIndex: 1, http: { method: 'GET', path: '/', status: 200 } }),
    ]);
    const text = await registry.metrics();
    expect(text).toContain('isthmus_flows_total{source="web",destination="api",dc="dc1",verdict="allowed",hop="client-sidecar"} 1');
    expect(text).toContain('isthmus_flows_total{source="web",destination="api",dc="dc1",verdict="allowed",hop="server-sidecar"} 2');
    expect(text).toContain('isthmus_flows_total{source="web",destination="db",dc="dc1",verdict="denied",hop="server-sidecar"} 1');
    expect(text).toContain('isthmus_flows_total{source="unknown",destination="ghost",dc="dc2",verdict="no_route",hop="gateway-ingress"} 1');
    expect(text).toContain('isthmus_flow_duration_seconds_count{source="web",destination="api",dc="dc1",verdict="allowed"} 3');
    expect(text).toContain('isthmus_flow_duration_seconds_bucket{le="0.005",source="web",destination="api",dc="dc1",verdict="allowed"} 2');
    expect(text).toContain('isthmus_flow_duration_seconds_bucket{le="5",source="web",destination="api",dc="dc1",verdict="allowed"} 3');
    expect(text).toMatch(/isthmus_flow_duration_seconds_sum\{source="web",destination="api",dc="dc1",verdict="allowed"\} 2\.505/);
    // Service names only: no SPIFFE IDs, trace ids or reporters become label values.
    expect(text).not.toContain('spiffe://');
    expect(text).not.toContain(traceId(1).slice(0, 20));
    expect(text).not.toContain('sidecar-1');
    expect(await register.getSingleMetric('isthmus_flows_total')).toBeUndefined();

    stop();
    store.append([flowRecord({ from: 'web', to: 'db', hop: 'server-sidecar', verdict: 'denied' })]);
    expect(await registry.metrics()).toContain('isthmus_flows_total{source="web",destination="db",dc="dc1",verdict="denied",hop="server-sidecar"} 1');
  });

  it('bounds the label values a reporter can make up', async () => {
    const registry = new Registry();
    const m = new FlowMetrics(registry, { maxNames: 3 });
    for (let i = 0; i < 50; i++) m.observe(flowRecord({ from: 'web', to: `made-up-${i}`, verdict: 'no_route' }));
    const text = await registry.metrics();
    const series = text.split('\n').filter((l) => l.startsWith('isthmus_flows_total{'));
    expect(series).toHaveLength(3);
    expect(text).toContain('isthmus_flows_total{source="web",destination="other",dc="dc1",verdict="no_route",hop="server-sidecar"} 48');
  });

  it('lets two regions in one process keep their own registries', async () => {
    const a = new Registry();
    const b = new Registry();
    const sa = new MemoryFlowStore(10);
    const sb = new MemoryFlowStore(10);
    observeFlows(sa, a);
    observeFlows(sb, b);
    sa.append([flowRecord({ from: 'web', to: 'api' })]);
    expect(await a.metrics()).toContain('isthmus_flows_total{source="web",destination="api",dc="dc1",verdict="allowed",hop="server-sidecar"} 1');
    expect(await b.metrics()).not.toContain('isthmus_flows_total{');
  });
});

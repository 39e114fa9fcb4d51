import { describe, expect, it } from 'vitest';
import type { SidecarContext } from './sidecar-context.js';
import type { SidecarTarget, SidecarUpstream } from './sidecar-config.js';
import { endpointKey, UpstreamState } from './upstream-state.js';

const ep = { host: '127.0.1.1', port: 8443, sni: 'api.default.dc2.internal.t.isthmus', spiffeId: 'spiffe://t.isthmus/ns/default/dc/dc2/svc/api' };
const target = (healthy: boolean): SidecarTarget => ({ id: 'api.default.dc2', datacenter: 'dc2', healthy, healthAgeMs: 0, endpoints: [ep] });
const upstream = (healthy: boolean): SidecarUpstream => ({
  name: 'api',
  namespace: 'default',
  datacenter: 'dc2',
  localBindHost: '127.0.0.1',
  localBindPort: 0,
  endpoints: [ep],
  protocol: 'http',
  targets: [target(healthy)],
  passiveHealthCheck: { MaxFailures: 2, MaxEjectionPercent: 100 },
});
const ctx = { log: { warn: () => {} } } as unknown as SidecarContext;

describe('UpstreamState', () => {
  it('forgets the ejections of a target the server reports healthy again, and keeps them otherwise', () => {
    const state = new UpstreamState(ctx, 'default/api@dc2', 'api');
    const down = upstream(false);
    for (let i = 0; i < 2; i++) state.report(down, down.targets![0], ep, false);
    expect(state.detector('api.default.dc2', down).isEjected(endpointKey(ep))).toBe(true);
    // A push that changes nothing about the target's health keeps the ejection.
    state.refresh(down, upstream(false));
    expect(state.detector('api.default.dc2', down).isEjected(endpointKey(ep))).toBe(true);
    // The target back to healthy: the sidecar's own evidence, gathered while it was down, is dropped.
    state.refresh(down, upstream(true));
    expect(state.detector('api.default.dc2', down).isEjected(endpointKey(ep))).toBe(false);
  });
});

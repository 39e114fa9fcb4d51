// The discovery chain compiler against Consul's documented examples: entries are parsed through the
// same schemas `PUT /v1/config` uses, then compiled.
import { describe, expect, it } from 'vitest';
import { chainEntries, compileDiscoveryChain, defaultResolver, reachableTargets } from './chain.js';
import type { ChainResolverNode, ChainRouterNode, ChainSplitterNode } from './chain-model.js';
import { parseConfigEntry, type ConfigEntry, type ConfigKind } from './model.js';

const TD = '11111111-2222-3333-4444-555555555555.isthmus';

function entries(...list: Record<string, unknown>[]) {
  const byKey = new Map<string, ConfigEntry>();
  for (const raw of list) {
    const e = parseConfigEntry(raw);
    byKey.set(`${e.Kind}/${e.Name}`, e);
  }
  return chainEntries({ get: <K extends ConfigKind>(kind: K, name: string) => byKey.get(`${kind}/${name}`) as never });
}

const compile = (service: string, list: Record<string, unknown>[], more: { targetDc?: string; legacyFailover?: string[] } = {}) =>
  compileDiscoveryChain(service, { dc: 'dc1', trustDomain: TD, entries: entries(...list), ...more });

function compileError(service: string, list: Record<string, unknown>[]) {
  try {
    compile(service, list);
  } catch (err) {
    const e = err as { code: string; violations: { Field: string; Message: string }[] };
    expect(e.code).toBe('ISTHMUS_ERR_INVALID');
    return e.violations;
  }
  throw new Error('compiled, but an error was expected');
}

const http = (name: string) => ({ Kind: 'service-defaults', Name: name, Protocol: 'http' });

describe('compileDiscoveryChain', () => {
  it('gives a service with no entries the implicit default chain: tcp, one resolver, one target, 5s connect timeout', () => {
    const c = compile('api', []);
    expect(c).toEqual({
      ServiceName: 'api',
      Namespace: 'default',
      Datacenter: 'dc1',
      Protocol: 'tcp',
      StartNode: 'resolver:api.default.dc1',
      Nodes: {
        'resolver:api.default.dc1': {
          Type: 'resolver',
          Name: 'api.default.dc1',
          Resolver: { Default: true, ConnectTimeout: '5s', Target: 'api.default.dc1' },
        },
      },
      Targets: {
        'api.default.dc1': {
          ID: 'api.default.dc1',
          Service: 'api',
          ServiceSubset: '',
          Namespace: 'default',
          Datacenter: 'dc1',
          MeshGateway: { Mode: '' },
          Subset: {},
          SNI: `api.default.dc1.internal.${TD}`,
          SpiffeID: `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
        },
      },
    });
  });

  it("takes the protocol from service-defaults over proxy-defaults' Config.protocol", () => {
    expect(compile('api', [{ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http2' } }]).Protocol).toBe('http2');
    expect(
      compile('api', [
        { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http2' } },
        { ...http('api'), Protocol: 'grpc' },
      ]).Protocol,
    ).toBe('grpc');
  });

  it("targets the upstream's datacenter and keeps the caller's as the chain's", () => {
    const c = compile('api', [], { targetDc: 'dc2' });
    expect(c.Datacenter).toBe('dc1');
    expect(c.StartNode).toBe('resolver:api.default.dc2');
    expect(c.Targets['api.default.dc2'].SNI).toBe(`api.default.dc2.internal.${TD}`);
  });

  it('resolves DefaultSubset with its filter and OnlyPassing, and a subset SNI (Consul: "service-resolver" example with v1/v2)', () => {
    const c = compile('web', [
      {
        Kind: 'service-resolver',
        Name: 'web',
        DefaultSubset: 'v1',
        ConnectTimeout: '15s',
        RequestTimeout: '30s',
        Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2', OnlyPassing: true } },
      },
    ]);
    expect(c.StartNode).toBe('resolver:v1.web.default.dc1');
    const r = c.Nodes[c.StartNode] as ChainResolverNode;
    expect(r.Resolver).toEqual({ Default: false, ConnectTimeout: '15s', RequestTimeout: '30s', Target: 'v1.web.default.dc1' });
    expect(c.Targets['v1.web.default.dc1']).toMatchObject({
      ServiceSubset: 'v1',
      Subset: { Filter: 'Service.Meta.version == v1' },
      SNI: `v1.web.default.dc1.internal.${TD}`,
      SpiffeID: `spiffe://${TD}/ns/default/dc/dc1/svc/web`,
    });
    expect(Object.keys(c.Targets)).toEqual(['v1.web.default.dc1']);
  });

  it('lists failover Datacenters of "*" as targets in order, without the primary target (Consul: failover to dc2, dc3)', () => {
    const c = compile('api', [{ Kind: 'service-resolver', Name: 'api', Failover: { '*': { Datacenters: ['dc1', 'dc3', 'dc2', 'dc3'] } } }], {
      targetDc: 'dc2',
    });
    const r = c.Nodes[c.StartNode] as ChainResolverNode;
    expect(r.Resolver.Target).toBe('api.default.dc2');
    expect(r.Resolver.Failover).toEqual({ Targets: ['api.default.dc1', 'api.default.dc3'] });
    expect(reachableTargets(c)).toEqual(['api.default.dc2', 'api.default.dc1', 'api.default.dc3']);
    expect(c.Targets['api.default.dc3'].SNI).toBe(`api.default.dc3.internal.${TD}`);
  });

  it('prefers a failover of the subset over "*", and inherits the subset in other DCs', () => {
    const c = compile('api', [
      {
        Kind: 'service-resolver',
        Name: 'api',
        DefaultSubset: 'v1',
        Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
        Failover: { v1: { Datacenters: ['dc2'] }, '*': { ServiceSubset: 'v2' } },
      },
    ]);
    expect((c.Nodes['resolver:v1.api.default.dc1'] as ChainResolverNode).Resolver.Failover).toEqual({ Targets: ['v1.api.default.dc2'] });
    expect(c.Targets['v1.api.default.dc2'].SNI).toBe(`v1.api.default.dc2.internal.${TD}`);
  });

  it('follows Failover Targets to other services, subsets and DCs (Consul: "Targets" example)', () => {
    const c = compile('db', [
      {
        Kind: 'service-resolver',
        Name: 'db',
        Failover: { '*': { Targets: [{ Datacenter: 'dc3' }, { Service: 'db-backup' }, { Service: 'db-backup', Datacenter: 'dc2' }] } },
      },
      { Kind: 'service-resolver', Name: 'db-backup', DefaultSubset: 'ro', Subsets: { ro: { Filter: 'Service.Tags contains readonly' } } },
    ]);
    expect((c.Nodes[c.StartNode] as ChainResolverNode).Resolver.Failover?.Targets).toEqual([
      'db.default.dc3',
      'ro.db-backup.default.dc1',
      'ro.db-backup.default.dc2',
    ]);
  });

  it('reads the older upstream Config.failover as Failover "*" only when no resolver is written', () => {
    const legacy = compile('api', [], { legacyFailover: ['dc2', 'dc3'] });
    expect((legacy.Nodes[legacy.StartNode] as ChainResolverNode).Resolver.Failover).toEqual({ Targets: ['api.default.dc2', 'api.default.dc3'] });
    const written = compile('api', [{ Kind: 'service-resolver', Name: 'api', ConnectTimeout: '1s' }], { legacyFailover: ['dc2'] });
    expect((written.Nodes[written.StartNode] as ChainResolverNode).Resolver.Failover).toBeUndefined();
  });

  it('follows a Redirect to another service, subset or DC, landing on its default subset (Consul: redirect example)', () => {
    const c = compile('billing', [
      { Kind: 'service-resolver', Name: 'billing', Redirect: { Service: 'payments', Datacenter: 'dc2' } },
      { Kind: 'service-resolver', Name: 'payments', DefaultSubset: 'stable', Subsets: { stable: { Filter: 'Service.Meta.track == stable' } } },
    ]);
    expect(c.StartNode).toBe('resolver:stable.payments.default.dc2');
    expect(Object.keys(c.Targets)).toEqual(['stable.payments.default.dc2']);
    expect((c.Nodes[c.StartNode] as ChainResolverNode).Resolver.Default).toBe(false);
  });

  it('reports a redirect loop naming the entries in it', () => {
    const v = compileError('a', [
      { Kind: 'service-resolver', Name: 'a', Redirect: { Service: 'b' } },
      { Kind: 'service-resolver', Name: 'b', Redirect: { Service: 'a' } },
    ]);
    expect(v).toEqual([
      { Field: 'service-resolver/b.Redirect.Service', Message: 'detected circular resolver redirect: [a.default.dc1 -> b.default.dc1 -> a.default.dc1]' },
    ]);
  });

  it('compiles a router with its routes in order and a catch-all to the service itself, routes to subsets going straight to their resolver', () => {
    const c = compile('web', [
      http('web'),
      http('admin'),
      {
        Kind: 'service-router',
        Name: 'web',
        Routes: [
          { Match: { HTTP: { PathPrefix: '/admin' } }, Destination: { Service: 'admin', RequestTimeout: '2s' } },
          { Match: { HTTP: { Header: [{ Name: 'x-debug', Exact: '1' }] } }, Destination: { ServiceSubset: 'canary' } },
        ],
      },
      { Kind: 'service-resolver', Name: 'web', Subsets: { canary: { Filter: 'Service.Tags contains canary' } } },
    ]);
    expect(c.Protocol).toBe('http');
    expect(c.StartNode).toBe('router:web.default');
    const router = c.Nodes['router:web.default'] as ChainRouterNode;
    expect(router.Routes.map((r) => r.NextNode)).toEqual(['resolver:admin.default.dc1', 'resolver:canary.web.default.dc1', 'resolver:web.default.dc1']);
    expect(router.Routes[0].Definition.Destination?.RequestTimeout).toBe('2s');
    expect(router.Routes[2].Definition).toEqual({ Match: { HTTP: { PathPrefix: '/' } }, Destination: { Service: 'web', Namespace: 'default' } });
    expect(Object.keys(c.Targets).sort()).toEqual(['admin.default.dc1', 'canary.web.default.dc1', 'web.default.dc1']);
  });

  it('reports a route to a subset the resolver does not define, naming the route', () => {
    const v = compileError('web', [
      http('web'),
      { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathPrefix: '/x' } }, Destination: { ServiceSubset: 'v9' } }] },
    ]);
    expect(v).toEqual([{ Field: 'service-router/web.Routes[0].Destination.ServiceSubset', Message: 'service "web" does not have a subset named "v9"' }]);
  });

  it("compiles a splitter: splits to subsets of itself, and splits to another service through that service's splitter, flattened (Consul: canary example)", () => {
    const c = compile('web', [
      http('web'),
      http('web-next'),
      {
        Kind: 'service-splitter',
        Name: 'web',
        Splits: [
          { Weight: 90, ServiceSubset: 'v1', RequestHeaders: { Set: { 'x-web-version': 'v1' } } },
          { Weight: 10, Service: 'web-next' },
        ],
      },
      { Kind: 'service-splitter', Name: 'web-next', Splits: [{ Weight: 50 }, { Weight: 50, Service: 'web', ServiceSubset: 'v2' }] },
      { Kind: 'service-resolver', Name: 'web', Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } } },
    ]);
    expect(c.StartNode).toBe('splitter:web.default');
    const s = c.Nodes['splitter:web.default'] as ChainSplitterNode;
    expect(s.Splits).toEqual([
      { Weight: 90, RequestHeaders: { Set: { 'x-web-version': 'v1' } }, NextNode: 'resolver:v1.web.default.dc1' },
      { Weight: 5, NextNode: 'resolver:web-next.default.dc1' },
      { Weight: 5, NextNode: 'resolver:v2.web.default.dc1' },
    ]);
    expect(defaultResolver(c)?.Resolver.Target).toBe('v1.web.default.dc1');
  });

  it('reports splitters that split into each other', () => {
    const v = compileError('a', [
      http('a'),
      http('b'),
      { Kind: 'service-splitter', Name: 'a', Splits: [{ Weight: 50, Service: 'b' }, { Weight: 50 }] },
      { Kind: 'service-splitter', Name: 'b', Splits: [{ Weight: 100, Service: 'a' }] },
    ]);
    expect(v).toEqual([{ Field: 'service-splitter/b.Splits[0].Service', Message: 'detected circular reference: [a -> b -> a]' }]);
  });

  it('puts the router before the splitter, and a route without a subset into the splitter', () => {
    const c = compile('web', [
      http('web'),
      { Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { PathExact: '/health' } } }] },
      { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 100 }] },
    ]);
    const router = c.Nodes[c.StartNode] as ChainRouterNode;
    expect(router.Routes.map((r) => r.NextNode)).toEqual(['splitter:web.default', 'splitter:web.default']);
    expect((c.Nodes['splitter:web.default'] as ChainSplitterNode).Splits[0].NextNode).toBe('resolver:web.default.dc1');
  });

  it('ignores a router and splitter when the protocol is tcp (only a resolver applies at L4)', () => {
    const c = compile('db', [
      { Kind: 'service-splitter', Name: 'db', Splits: [{ Weight: 100, Service: 'db2' }] },
      { Kind: 'service-resolver', Name: 'db', ConnectTimeout: '2s' },
    ]);
    expect(c.StartNode).toBe('resolver:db.default.dc1');
    expect(Object.keys(c.Nodes)).toEqual(['resolver:db.default.dc1']);
  });

  it('reports services of different protocols along a routed chain', () => {
    const v = compileError('web', [http('web'), { Kind: 'service-router', Name: 'web', Routes: [{ Destination: { Service: 'legacy' } }] }]);
    expect(v).toEqual([
      {
        Field: 'service-router/web.Routes[0].Destination.Service',
        Message: 'discovery chain "web" uses inconsistent protocols; service "legacy" has "tcp" which is not "http"',
      },
    ]);
  });

  it('reports a subset filter that does not parse, at its field', () => {
    const v = compileError('api', [{ Kind: 'service-resolver', Name: 'api', DefaultSubset: 'v1', Subsets: { v1: { Filter: 'Service.Meta.version = v1' } } }]);
    expect(v).toEqual([{ Field: 'service-resolver/api.Subsets.v1.Filter', Message: expect.stringMatching(/not a valid filter expression: unexpected "="/) }]);
  });

  it('carries the load balancer and the mesh gateway mode', () => {
    const c = compile('api', [
      { Kind: 'service-defaults', Name: 'api', MeshGateway: { Mode: 'local' } },
      { Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }] } },
    ]);
    expect((c.Nodes[c.StartNode] as ChainResolverNode).LoadBalancer).toEqual({
      Policy: 'ring_hash',
      HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }],
    });
    expect(c.Targets['api.default.dc1'].MeshGateway).toEqual({ Mode: 'local' });
  });
});

import { describe, expect, it } from 'vitest';
import { isIsthmusError } from '../core/errors.js';
import { parseConfigEntry, protocolOf, type ProxyDefaults, type ServiceDefaults } from './model.js';

/** The violations a body is refused with, as [field path, message] pairs. */
function refusal(body: unknown): [string, string][] {
  try {
    parseConfigEntry(body);
  } catch (err) {
    if (!isIsthmusError(err, 'ISTHMUS_ERR_INVALID')) throw err;
    return err.violations.map((v) => [v.Field, v.Message]);
  }
  throw new Error('accepted');
}
const fields = (body: unknown) => refusal(body).map(([f]) => f);

describe('a valid entry of each kind', () => {
  it('proxy-defaults', () => {
    const e = parseConfigEntry({
      Kind: 'proxy-defaults',
      Name: 'global',
      Config: { protocol: 'http', local_connect_timeout_ms: 1000 },
      MeshGateway: { Mode: 'local' },
    });
    expect(e).toEqual({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http', local_connect_timeout_ms: 1000 }, MeshGateway: { Mode: 'local' } });
  });

  it('service-defaults, with its upstream defaults', () => {
    const body = {
      Kind: 'service-defaults',
      Name: 'api',
      Protocol: 'grpc',
      MeshGateway: { Mode: 'remote' },
      UpstreamConfig: {
        Defaults: {
          ConnectTimeoutMs: 5000,
          Limits: { MaxConnections: 512, MaxPendingRequests: 512, MaxConcurrentRequests: 512 },
          PassiveHealthCheck: { Interval: '10s', MaxFailures: 5, EnforcingConsecutive5xx: 100 },
        },
      },
      Meta: { owner: 'team-a' },
    };
    expect(parseConfigEntry(body)).toEqual(body);
  });

  it('service-resolver, with subsets, failover by datacenters and by targets, and a hash load balancer', () => {
    const body = {
      Kind: 'service-resolver',
      Name: 'api',
      DefaultSubset: 'v1',
      Subsets: { v1: { Filter: 'Service.Meta.version == v1', OnlyPassing: true }, v2: { Filter: 'Service.Meta.version == v2' } },
      Failover: { '*': { Datacenters: ['dc2', 'dc3'] }, v2: { Targets: [{ Service: 'api', ServiceSubset: 'v1', Datacenter: 'dc3' }] } },
      ConnectTimeout: '5s',
      RequestTimeout: '500ms',
      LoadBalancer: { Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user-id', Terminal: true }] },
    };
    expect(parseConfigEntry(body)).toEqual(body);
    expect(parseConfigEntry({ Kind: 'service-resolver', Name: 'api-dc2', Redirect: { Service: 'api', Datacenter: 'dc2' } })).toMatchObject({
      Redirect: { Service: 'api', Datacenter: 'dc2' },
    });
  });

  it('service-resolver with every LoadBalancer field, as Consul documents them', () => {
    const ring = {
      Kind: 'service-resolver',
      Name: 'api',
      LoadBalancer: {
        Policy: 'ring_hash',
        RingHashConfig: { MinimumRingSize: 1024, MaximumRingSize: 8192 },
        HashPolicies: [
          { Field: 'header', FieldValue: 'x-user', Terminal: true },
          { Field: 'cookie', FieldValue: 'route', CookieConfig: { TTL: '1h', Path: '/' } },
          { Field: 'cookie', FieldValue: 'visit', CookieConfig: { Session: true } },
          { Field: 'query_parameter', FieldValue: 'team' },
          { SourceIP: true },
        ],
      },
    };
    expect(parseConfigEntry(ring)).toEqual(ring);
    const least = { Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'least_request', LeastRequestConfig: { ChoiceCount: 3 } } };
    expect(parseConfigEntry(least)).toEqual(least);
  });

  it('service-splitter, with weights to two decimals summing to 100', () => {
    const body = {
      Kind: 'service-splitter',
      Name: 'api',
      Splits: [
        { Weight: 33.33, ServiceSubset: 'v1', RequestHeaders: { Set: { 'x-version': '1' } } },
        { Weight: 33.33, ServiceSubset: 'v2', ResponseHeaders: { Remove: ['x-debug'] } },
        { Weight: 33.34, Service: 'api-next' },
      ],
    };
    expect(parseConfigEntry(body)).toEqual(body);
  });

  it('service-router, with path, header, query and method matches and a destination', () => {
    const body = {
      Kind: 'service-router',
      Name: 'api',
      Routes: [
        {
          Match: {
            HTTP: {
              PathPrefix: '/admin',
              Header: [{ Name: 'x-debug', Exact: '1' }],
              QueryParam: [{ Name: 'canary', Present: true }],
              Methods: ['GET', 'POST'],
            },
          },
          Destination: {
            Service: 'admin',
            ServiceSubset: 'v2',
            PrefixRewrite: '/',
            RequestTimeout: '2s',
            IdleTimeout: '1m',
            NumRetries: 3,
            RetryOnConnectFailure: true,
            RetryOnStatusCodes: [503],
            RequestHeaders: { Add: { 'x-routed': 'yes' } },
          },
        },
        { Match: { HTTP: { PathRegex: '^/pkg\\.Service/[A-Z][a-zA-Z]*$' } }, Destination: { Service: 'grpc-api' } },
      ],
    };
    expect(parseConfigEntry(body)).toEqual(body);
  });

  it('drops the read-back indexes, so an entry read can be written back', () => {
    expect(parseConfigEntry({ Kind: 'service-defaults', Name: 'web', Protocol: 'http', CreateIndex: 4, ModifyIndex: 9 })).toEqual({
      Kind: 'service-defaults',
      Name: 'web',
      Protocol: 'http',
    });
  });
});

describe('refusals name their field paths', () => {
  it('an unknown kind, a missing kind', () => {
    expect(fields({ Kind: 'mesh', Name: 'mesh' })).toEqual(['Kind']);
    expect(fields({ Name: 'web' })).toEqual(['Kind']);
    expect(fields([1])).toEqual(['body']);
  });

  it('an unknown field, named where it is, one violation per field', () => {
    expect(refusal({ Kind: 'service-defaults', Name: 'web', Protocl: 'http' })).toEqual([['Protocl', 'is not a field of this kind']]);
    expect(fields({ Kind: 'service-router', Name: 'web', Routes: [{ Match: { HTTP: { Path: '/x', Verb: 'GET' } } }] })).toEqual([
      'Routes[0].Match.HTTP.Path',
      'Routes[0].Match.HTTP.Verb',
    ]);
    expect(fields({ Kind: 'service-defaults', Name: 'web', UpstreamConfig: { Defaults: { Limits: { MaxConnection: 1 } } } })).toEqual([
      'UpstreamConfig.Defaults.Limits.MaxConnection',
    ]);
  });

  it('proxy-defaults not named global, an unknown protocol, a bad mesh gateway mode', () => {
    expect(fields({ Kind: 'proxy-defaults', Name: 'web', Config: { protocol: 'udp' }, MeshGateway: { Mode: 'far' } })).toEqual([
      'Name',
      'Config.protocol',
      'MeshGateway.Mode',
    ]);
  });

  it('service-defaults: protocol, name, timeouts and counts', () => {
    expect(
      fields({
        Kind: 'service-defaults',
        Name: 'we b',
        Protocol: 'https',
        UpstreamConfig: { Defaults: { ConnectTimeoutMs: -1, PassiveHealthCheck: { Interval: 'soon', MaxFailures: 1.5 } } },
      }),
    ).toEqual([
      'Name',
      'Protocol',
      'UpstreamConfig.Defaults.ConnectTimeoutMs',
      'UpstreamConfig.Defaults.PassiveHealthCheck.Interval',
      'UpstreamConfig.Defaults.PassiveHealthCheck.MaxFailures',
    ]);
  });

  it('splitter weights that do not sum to 100, or have more than two decimals', () => {
    const r = refusal({ Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 90 }, { Weight: 9 }] });
    expect(r).toEqual([['Splits', 'weights must sum to 100 (they sum to 99)']]);
    expect(fields({ Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 99.995 }, { Weight: 0.005 }] })).toEqual([
      'Splits[0].Weight',
      'Splits[1].Weight',
      'Splits',
    ]);
    expect(fields({ Kind: 'service-splitter', Name: 'api', Splits: [] })).toEqual(['Splits', 'Splits']);
    expect(fields({ Kind: 'service-splitter', Name: 'api', Splits: [{ Weight: 101 }] })).toContain('Splits[0].Weight');
  });

  it('a route regex that is not RE2 (a lookahead), in a path and in a header', () => {
    const r = refusal({
      Kind: 'service-router',
      Name: 'api',
      Routes: [{ Match: { HTTP: { PathRegex: '^/(?=admin)', Header: [{ Name: 'x', Regex: '(a)\\1' }] } } }],
    });
    expect(r.map(([f]) => f)).toEqual(['Routes[0].Match.HTTP.PathRegex', 'Routes[0].Match.HTTP.Header[0].Regex']);
    expect(r[0][1]).toMatch(/not a valid RE2 regular expression/);
  });

  it('router: two path matches, a bad method, a prefix rewrite without a path match, a bad status and duration', () => {
    expect(
      fields({
        Kind: 'service-router',
        Name: 'api',
        Routes: [
          { Match: { HTTP: { PathExact: '/a', PathPrefix: '/b', Methods: ['FETCH'] } } },
          { Destination: { PrefixRewrite: '/v2', RetryOnStatusCodes: [700], RequestTimeout: '5 seconds', RetryOn: ['sometimes'] } },
        ],
      }),
    ).toEqual([
      'Routes[0].Match.HTTP.Methods[0]',
      'Routes[0].Match.HTTP',
      'Routes[1].Destination.RequestTimeout',
      'Routes[1].Destination.RetryOn[0]',
      'Routes[1].Destination.RetryOnStatusCodes[0]',
      'Routes[1].Destination.PrefixRewrite',
    ]);
    expect(fields({ Kind: 'service-router', Name: 'api', Routes: [{ Destination: { PrefixRewrite: '/v2' } }] })).toEqual([
      'Routes[0].Destination.PrefixRewrite',
    ]);
  });

  it('resolver: a default subset or failover that is not a subset, redirect with subsets, hash policies without a hash policy', () => {
    expect(
      fields({
        Kind: 'service-resolver',
        Name: 'api',
        DefaultSubset: 'v3',
        Subsets: { v1: {} },
        Failover: { v9: { Datacenters: ['dc2'] }, '*': { Datacenters: ['dc2'], Targets: [{ Datacenter: 'dc3' }] } },
        LoadBalancer: { Policy: 'round_robin', HashPolicies: [{ Field: 'cookie' }] },
      }),
    ).toEqual(['DefaultSubset', 'Failover.v9', 'Failover.*.Targets', 'LoadBalancer.HashPolicies', 'LoadBalancer.HashPolicies[0].FieldValue']);
    expect(fields({ Kind: 'service-resolver', Name: 'api', Subsets: { v1: {} }, Redirect: { Datacenter: 'dc2' } })).toEqual(['Redirect']);
    expect(
      fields({
        Kind: 'service-resolver',
        Name: 'api',
        LoadBalancer: {
          Policy: 'maglev',
          RingHashConfig: { MinimumRingSize: 4096, MaximumRingSize: 1024 },
          LeastRequestConfig: { ChoiceCount: 1 },
          HashPolicies: [
            { SourceIP: true, FieldValue: 'x-user' },
            { Field: 'cookie', FieldValue: 's', CookieConfig: { Session: true, TTL: '10s' } },
            { Field: 'cookie', FieldValue: 's', CookieConfig: { Session: true, TTL: '0s' } },
          ],
        },
      }),
    ).toEqual([
      'LoadBalancer.LeastRequestConfig.ChoiceCount',
      'LoadBalancer.RingHashConfig',
      'LoadBalancer.LeastRequestConfig',
      'LoadBalancer.RingHashConfig.MinimumRingSize',
      'LoadBalancer.HashPolicies[0].FieldValue',
      'LoadBalancer.HashPolicies[1].CookieConfig.TTL',
    ]);
    expect(
      fields({
        Kind: 'service-resolver',
        Name: 'api',
        LoadBalancer: { Policy: 'ring_hash', RingHashConfig: { MinimumRingSize: 9_000_000 } },
      }),
    ).toEqual(['LoadBalancer.RingHashConfig.MinimumRingSize']);
    expect(fields({ Kind: 'service-resolver', Name: 'api', LoadBalancer: { Policy: 'fastest' }, ConnectTimeout: 'x' })).toEqual([
      'ConnectTimeout',
      'LoadBalancer.Policy',
    ]);
  });
});

describe('protocolOf', () => {
  it("takes the service's defaults, then proxy-defaults, then tcp", () => {
    const sd: Record<string, ServiceDefaults> = {
      web: { Kind: 'service-defaults', Name: 'web', Protocol: 'http2' },
      bare: { Kind: 'service-defaults', Name: 'bare' },
    };
    let pd: ProxyDefaults | undefined;
    const lookup = { serviceDefaults: (n: string) => sd[n], proxyDefaults: () => pd };
    expect([protocolOf('web', lookup), protocolOf('bare', lookup), protocolOf('db', lookup)]).toEqual(['http2', 'tcp', 'tcp']);
    pd = { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'grpc' } };
    expect([protocolOf('web', lookup), protocolOf('bare', lookup), protocolOf('db', lookup)]).toEqual(['http2', 'grpc', 'grpc']);
  });
});

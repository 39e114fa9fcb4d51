// What an upstream is pushed: its chain, every target with endpoints and health, and the endpoints
// of the default path's chosen target. Upstreams to another DC go through this DC's gateways at their
// LAN address, read the catalog's way (catalog/gateways.ts), the address federation dials through.
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog, serviceSchema } from '../catalog/index.js';
import { chainEntries, ConfigEntries, parseConfigEntry } from '../config-entries/index.js';
import { MemoryStore } from '../store/index.js';
import { StaticFederationView, TD } from './testing/server-setup.js';
import { localGateways, planUpstream, targetState, type UpstreamContext } from './upstreams.js';

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

const actor = { accessorId: 'acc-1', description: 'tester', dc: 'dc1' };

async function setup(): Promise<{ catalog: Catalog; entries: ConfigEntries }> {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const c = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '192.0.2.1' });
  await c.start();
  const entries = new ConfigEntries({ store, dc: 'dc1' });
  stops.push(
    () => store.stop(),
    () => c.stop(),
  );
  return { catalog: c, entries };
}

const gateway = (id: string, over: Record<string, unknown>) =>
  serviceSchema.parse({ ID: id, Name: 'mesh-gateway', Kind: 'mesh-gateway', Port: 8443, Check: { TTL: '30s', Status: 'passing' }, ...over });

async function instance(c: Catalog, id: string, port: number, meta: Record<string, string>, status = 'passing', sidecarStatus = 'passing') {
  await c.registerService(
    serviceSchema.parse({ ID: id, Name: 'api', Port: 8080, Meta: meta, Check: { CheckID: `service:${id}`, TTL: '30s', Status: status } }),
  );
  await c.registerService(
    serviceSchema.parse({
      ID: `${id}-sidecar-proxy`,
      Name: 'api-sidecar-proxy',
      Kind: 'connect-proxy',
      Address: '127.0.0.1',
      Port: port,
      Proxy: { DestinationServiceName: 'api', DestinationServiceID: id },
      Check: { CheckID: `service:${id}-sidecar-proxy`, TTL: '30s', Status: sidecarStatus },
    }),
  );
}

function context(catalog: Catalog, federation: StaticFederationView, entries?: ConfigEntries): UpstreamContext {
  return { catalog, federation, dc: 'dc1', trustDomain: TD, gatewayNames: ['mesh-gateway'], entries: entries && chainEntries(entries) };
}

const write = (entries: ConfigEntries, raw: Record<string, unknown>) => entries.put(parseConfigEntry(raw), {}, actor);

describe('upstreams through the local gateways', () => {
  it("take a gateway's tagged LAN address over its service Address, as federation does", async () => {
    const { catalog: c } = await setup();
    await c.registerService(
      gateway('gw-1', { Address: '10.0.0.9', TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 8443 }, wan: { Address: '203.0.113.7', Port: 443 } } }),
    );
    const ctx = context(c, new StaticFederationView('dc1', ['dc2']));
    expect(localGateways(ctx)).toEqual([{ host: '10.0.0.5', port: 8443 }]);
    const plan = planUpstream(ctx, { DestinationName: 'api', Datacenter: 'dc2', LocalBindPort: 9000 });
    expect(plan.endpoints).toEqual([
      { host: '10.0.0.5', port: 8443, sni: `api.default.dc2.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc2/svc/api` },
    ]);
  });

  it("go to the other DC's gateways (WAN host:port, IPv6 in brackets) when this DC has none", async () => {
    const { catalog: c } = await setup();
    const federation = new StaticFederationView('dc1', ['dc2']);
    federation.gatewaysByDc.dc2 = ['198.51.100.1:443', 'nonsense', '[2001:db8::2]:443'];
    const plan = planUpstream(context(c, federation), { DestinationName: 'api', DestinationNamespace: 'team', Datacenter: 'dc2', LocalBindPort: 9000 });
    expect(plan.endpoints.map((e) => [e.host, e.port, e.sni])).toEqual([
      ['198.51.100.1', 443, `api.team.dc2.internal.${TD}`],
      ['2001:db8::2', 443, `api.team.dc2.internal.${TD}`],
    ]);
  });
});

describe('planUpstream', () => {
  it('lists a local subset target as the healthy sidecars whose instance the filter selects, warning healthy unless OnlyPassing', async () => {
    const { catalog: c, entries } = await setup();
    await instance(c, 'api-1', 21001, { version: 'v1' });
    await instance(c, 'api-2', 21002, { version: 'v1' }, 'warning');
    await instance(c, 'api-3', 21003, { version: 'v2' });
    await instance(c, 'api-4', 21004, { version: 'v1' }, 'critical');
    await write(entries, {
      Kind: 'service-resolver',
      Name: 'api',
      DefaultSubset: 'v1',
      Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, strict: { Filter: 'Service.Meta.version == v1', OnlyPassing: true } },
    });
    const ctx = context(c, new StaticFederationView('dc1'), entries);
    const plan = planUpstream(ctx, { DestinationName: 'api', LocalBindPort: 9000 });
    expect(plan.chain.StartNode).toBe('resolver:v1.api.default.dc1');
    expect(plan.targets).toEqual([
      {
        id: 'v1.api.default.dc1',
        datacenter: 'dc1',
        healthy: true,
        healthAgeMs: 0,
        endpoints: [21001, 21002].map((port) => ({
          host: '127.0.0.1',
          port,
          sni: `v1.api.default.dc1.internal.${TD}`,
          spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
        })),
      },
    ]);
    expect(plan.endpoints).toEqual(plan.targets[0].endpoints);
    expect(
      targetState(ctx, {
        ...plan.chain.Targets['v1.api.default.dc1'],
        ServiceSubset: 'strict',
        Subset: { Filter: 'Service.Meta.version == v1', OnlyPassing: true },
      }).endpoints.map((e) => e.port),
    ).toEqual([21001]);
  });

  it('fails the default path over to the first healthy target by the exported subset count, with the staleness of that view', async () => {
    const { catalog: c, entries } = await setup();
    await c.registerService(gateway('gw-1', { Address: '127.0.1.1' }));
    await write(entries, { Kind: 'service-resolver', Name: 'api', Failover: { '*': { Datacenters: ['dc3'] } } });
    const federation = new StaticFederationView('dc1', ['dc2', 'dc3']);
    federation.subsetHealthy = { 'dc2/default/api/': 2, 'dc3/default/api/': 1 };
    federation.staleness = { dc2: 1200, dc3: 300 };
    const ctx = context(c, federation, entries);
    const u = { DestinationName: 'api', Datacenter: 'dc2', LocalBindPort: 9000 };
    let plan = planUpstream(ctx, u);
    expect(plan.targets.map((t) => [t.id, t.healthy, t.healthAgeMs, t.endpoints[0].sni])).toEqual([
      ['api.default.dc2', true, 1200, `api.default.dc2.internal.${TD}`],
      ['api.default.dc3', true, 300, `api.default.dc3.internal.${TD}`],
    ]);
    expect(plan.endpoints[0].sni).toBe(`api.default.dc2.internal.${TD}`);
    federation.subsetHealthy['dc2/default/api/'] = 0;
    plan = planUpstream(ctx, u);
    expect(plan.targets.map((t) => t.healthy)).toEqual([false, true]);
    expect(plan.endpoints.map((e) => [e.host, e.port, e.sni])).toEqual([['127.0.1.1', 8443, `api.default.dc3.internal.${TD}`]]);
    // Nothing healthy anywhere: the primary target's endpoints, as before failover existed.
    federation.subsetHealthy['dc3/default/api/'] = 0;
    expect(planUpstream(ctx, u).endpoints[0].sni).toBe(`api.default.dc2.internal.${TD}`);
  });

  it('reads the older Config.failover as Failover "*" when no resolver is written', async () => {
    const { catalog: c } = await setup();
    await c.registerService(gateway('gw-1', { Address: '127.0.1.1' }));
    const federation = new StaticFederationView('dc1', ['dc2', 'dc3']);
    federation.healthy = { 'dc2/default/api': 0, 'dc3/default/api': 3 };
    const plan = planUpstream(context(c, federation), { DestinationName: 'api', Datacenter: 'dc2', LocalBindPort: 9000, Config: { failover: ['dc3'] } });
    expect(plan.targets.map((t) => [t.id, t.healthy])).toEqual([
      ['api.default.dc2', false],
      ['api.default.dc3', true],
    ]);
    expect(plan.endpoints[0].sni).toBe(`api.default.dc3.internal.${TD}`);
  });

  it('routes a remote subset by its SNI and its own count, unknown counting as unhealthy', async () => {
    const { catalog: c, entries } = await setup();
    await c.registerService(gateway('gw-1', { Address: '127.0.1.1' }));
    await write(entries, {
      Kind: 'service-resolver',
      Name: 'api',
      DefaultSubset: 'v2',
      Subsets: { v2: { Filter: 'Service.Meta.version == v2' } },
      Failover: { v2: { Datacenters: ['dc3'] } },
    });
    const federation = new StaticFederationView('dc1', ['dc2', 'dc3']);
    federation.subsetHealthy = { 'dc2/default/api/': 4, 'dc2/default/api/v2': 0, 'dc3/default/api/v2': 2 };
    const plan = planUpstream(context(c, federation, entries), { DestinationName: 'api', Datacenter: 'dc2', LocalBindPort: 9000 });
    expect(plan.targets.map((t) => [t.id, t.healthy])).toEqual([
      ['v2.api.default.dc2', false],
      ['v2.api.default.dc3', true],
    ]);
    expect(plan.endpoints[0].sni).toBe(`v2.api.default.dc3.internal.${TD}`);
  });

  it('pushes the http protocol and a router chain with every routed target', async () => {
    const { catalog: c, entries } = await setup();
    await instance(c, 'api-1', 21001, { version: 'v1' });
    await write(entries, { Kind: 'service-defaults', Name: 'api', Protocol: 'http' });
    await write(entries, { Kind: 'service-defaults', Name: 'admin', Protocol: 'http' });
    await write(entries, { Kind: 'service-router', Name: 'api', Routes: [{ Match: { HTTP: { PathPrefix: '/admin' } }, Destination: { Service: 'admin' } }] });
    const plan = planUpstream(context(c, new StaticFederationView('dc1'), entries), { DestinationName: 'api', LocalBindPort: 9000 });
    expect(plan.chain.Protocol).toBe('http');
    expect(plan.targets.map((t) => [t.id, t.healthy])).toEqual([
      ['admin.default.dc1', false],
      ['api.default.dc1', true],
    ]);
    // The default path (the catch-all route) is the service itself.
    expect(plan.endpoints.map((e) => e.port)).toEqual([21001]);
  });
});

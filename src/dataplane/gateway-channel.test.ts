import { afterEach, describe, expect, it } from 'vitest';
import { serviceSchema } from '../catalog/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { RouteTable, type GatewayRoutes } from '../gateway/index.js';
import { parseConfigEntry } from '../config-entries/index.js';
import { DataPlaneClient, GatewayClient, type GatewayClientOptions, type GatewayConfigMessage, type SidecarConfigMessage } from '../dataplane-client/index.js';
import { setupServer, StaticFederationView, TD } from './testing/server-setup.js';

const stops: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

const until = async (fn: () => boolean, what = 'condition') => {
  for (let i = 0; i < 150 && !fn(); i++) await new Promise((r) => setTimeout(r, 20));
  if (!fn()) throw new Error(`timed out waiting for ${what}`);
};

function gatewayClient(addr: string, over: Partial<GatewayClientOptions> = {}) {
  const pushes: { routes: GatewayRoutes; raw: GatewayConfigMessage }[] = [];
  let fatal: [string, string] | undefined;
  const client = new GatewayClient({
    serverAddr: addr,
    id: 'gw-1',
    dc: 'dc1',
    lanAddress: '127.0.1.1:8443',
    wanAddress: '198.51.100.7:443',
    flushMs: 20,
    onRoutes: (routes, raw) => pushes.push({ routes, raw }),
    onFatal: (code, msg) => (fatal = [code, msg]),
    ...over,
  });
  client.start();
  stops.push(() => client.stop());
  return { client, pushes, fatal: () => fatal };
}

function sidecar(addr: string, serviceId: string) {
  const configs: SidecarConfigMessage[] = [];
  const client = new DataPlaneClient({ serverAddr: addr, serviceId, onConfig: (c) => configs.push(c) });
  client.start();
  stops.push(() => client.stop());
  return configs;
}

const gatewayFlow = (over: Partial<FlowRecord> = {}): FlowRecord => ({
  id: 'g1',
  traceId: 'cd'.repeat(16),
  requestIndex: 0,
  hop: 'gateway-ingress',
  dc: 'dc1',
  reporter: 'gw-1',
  source: { spiffeId: '', service: '', namespace: '', dc: '' },
  destination: { spiffeId: '', service: 'api', namespace: 'default', dc: 'dc1' },
  sni: `api.default.dc1.internal.${TD}`,
  verdict: 'allowed',
  reason: 'routed to 127.0.0.1:21500',
  intentionId: '',
  intentionDc: '',
  intentionIndex: 0,
  startTime: Date.now(),
  durationMs: 3,
  bytesIn: 10,
  bytesOut: 20,
  ...over,
});

describe('gateway channel', () => {
  it('registers the gateway as a mesh-gateway, pushes its routes and pushes again on every change', async () => {
    const fed = new StaticFederationView('dc1', ['dc2', 'dc3']);
    fed.gatewaysByDc = { dc2: ['127.0.2.1:8443', '127.0.2.2:8443'] };
    fed.servers = ['127.0.1.1:8300'];
    const { server, catalog, flows } = await setupServer(stops, { federation: fed });
    await catalog.registerService(
      serviceSchema.parse({ Name: 'api', Port: 9000, Tags: ['v1'], Connect: { SidecarService: { Port: 21500, Check: { TTL: '1h', Status: 'passing' } } } }),
    );
    await catalog.registerService(serviceSchema.parse({ Name: 'lonely', Port: 9001 }));
    const gw = gatewayClient(server.address, { version: '0.1.0' });
    await until(() => gw.pushes.length >= 1, 'first push');
    expect(gw.pushes[0].routes).toEqual({
      dc: 'dc1',
      trustDomain: TD,
      services: [{ name: 'api', namespace: 'default', endpoints: [{ host: '127.0.0.1', port: 21500, tags: ['v1'] }] }],
      serverAddresses: ['127.0.1.1:8300'],
      remotes: [
        { dc: 'dc2', gateways: ['127.0.2.1:8443', '127.0.2.2:8443'] },
        { dc: 'dc3', gateways: [] },
      ],
    });

    await until(() => catalog.instances('mesh-gateway').length === 1, 'registration');
    const [entry] = catalog.instances('mesh-gateway', { passingOnly: true });
    expect(entry.service).toMatchObject({
      ID: 'gw-1',
      Service: 'mesh-gateway',
      Kind: 'mesh-gateway',
      Address: '127.0.1.1',
      Port: 8443,
      Meta: { version: '0.1.0' },
      TaggedAddresses: { lan: { Address: '127.0.1.1', Port: 8443 }, wan: { Address: '198.51.100.7', Port: 443 } },
    });
    expect(entry.checks.map((c) => [c.CheckID, c.Status])).toEqual([['service:gw-1', 'passing']]);

    await catalog.registerService(
      serviceSchema.parse({ Name: 'db', Port: 5432, Connect: { SidecarService: { Port: 21501, Check: { TTL: '1h', Status: 'passing' } } } }),
    );
    await until(() => gw.pushes.at(-1)!.routes.services.some((s) => s.name === 'db'), 'push after a new service');
    fed.gatewaysByDc.dc3 = ['127.0.3.1:8443'];
    fed.change();
    await until(() => gw.pushes.at(-1)!.routes.remotes.some((r) => r.dc === 'dc3' && r.gateways.length === 1), 'push after a federation change');
    const versions = gw.pushes.map((p) => p.raw.version);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));

    gw.client.report(gatewayFlow());
    await until(() => flows.size() === 1, 'stored flow');
    expect(flows.query({ trace: 'cd'.repeat(16) })[0]).toMatchObject({ hop: 'gateway-ingress', reporter: 'gw-1' });
  });

  it('fails the registration the moment the stream ends, so sidecars stop using that gateway', async () => {
    const fed = new StaticFederationView('dc1', ['dc2']);
    fed.gatewaysByDc = { dc2: ['127.0.2.1:8443'] };
    const { server, catalog } = await setupServer(stops, { federation: fed });
    await catalog.registerService(
      serviceSchema.parse({
        Name: 'web',
        Port: 1,
        Connect: { SidecarService: { Port: 21502, Proxy: { Upstreams: [{ DestinationName: 'api', Datacenter: 'dc2', LocalBindPort: 9191 }] } } },
      }),
    );
    const web = sidecar(server.address, 'web-sidecar-proxy');
    await until(() => web.length >= 1, 'sidecar config');
    // No gateway in dc1 yet: straight to dc2's gateways, with dc2's name and identity.
    expect(web[0].upstreams[0].endpoints).toEqual([
      { host: '127.0.2.1', port: 8443, sni: `api.default.dc2.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc2/svc/api` },
    ]);

    const gw = gatewayClient(server.address);
    await until(() => web.at(-1)!.upstreams[0].endpoints[0]?.host === '127.0.1.1', 'sidecar sent to the local gateway');
    expect(web.at(-1)!.upstreams[0].endpoints).toEqual([
      { host: '127.0.1.1', port: 8443, sni: `api.default.dc2.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc2/svc/api` },
    ]);

    gw.client.stop();
    await until(() => catalog.instances('mesh-gateway')[0]?.checks[0]?.Status === 'critical', 'critical after the stream ended');
    expect(catalog.instances('mesh-gateway')[0].checks[0].Output).toBe('gateway stream closed');
    await until(() => web.at(-1)!.upstreams[0].endpoints[0]?.host === '127.0.2.1', 'sidecar back on the remote gateways');

    // Back again: passing, and used again.
    gatewayClient(server.address);
    await until(() => catalog.instances('mesh-gateway', { passingOnly: true }).length === 1, 'passing again');
    await until(() => web.at(-1)!.upstreams[0].endpoints[0]?.host === '127.0.1.1', 'local gateway used again');
  });

  it("fails over in the upstream's order to the first DC with a healthy instance, and back", async () => {
    const fed = new StaticFederationView('dc1', ['dc2', 'dc3']);
    fed.gatewaysByDc = { dc2: ['127.0.2.1:8443'], dc3: ['127.0.3.1:8443'] };
    const { server, catalog } = await setupServer(stops, { federation: fed });
    await catalog.registerService(
      serviceSchema.parse({ Name: 'api', Port: 9000, Connect: { SidecarService: { Port: 21500, Check: { TTL: '30s', Status: 'passing' } } } }),
    );
    await catalog.registerService(
      serviceSchema.parse({
        Name: 'web',
        Port: 1,
        Connect: {
          SidecarService: { Port: 21502, Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 9191, Config: { failover: ['dc2', 'dc3'] } }] } },
        },
      }),
    );
    const web = sidecar(server.address, 'web-sidecar-proxy');
    const current = () => web.at(-1)?.upstreams[0].endpoints.map((e) => `${e.host}:${e.port} ${e.sni}`) ?? [];
    await until(() => web.length >= 1, 'sidecar config');
    expect(current()).toEqual([`127.0.0.1:21500 api.default.dc1.internal.${TD}`]);

    // The local instance fails; dc2 is not known to have one, dc3 has: dc3.
    fed.healthy = { 'dc3/default/api': 2 };
    await catalog.updateTtl('service:api-sidecar-proxy', 'critical', 'down');
    await until(() => current()[0] === `127.0.3.1:8443 api.default.dc3.internal.${TD}`, 'failover to dc3');
    // dc2 reports a healthy instance: it comes first in the order.
    fed.healthy['dc2/default/api'] = 1;
    fed.change();
    await until(() => current()[0] === `127.0.2.1:8443 api.default.dc2.internal.${TD}`, 'failover to dc2');
    // The local instance recovers: home again.
    await catalog.updateTtl('service:api-sidecar-proxy', 'passing', 'up');
    await until(() => current()[0] === `127.0.0.1:21500 api.default.dc1.internal.${TD}`, 'back to dc1');
  });

  it("pushes each upstream's protocol, chain and targets, follows a resolver written later, and routes a subset SNI to that subset only", async () => {
    const fed = new StaticFederationView('dc1', ['dc2']);
    fed.gatewaysByDc = { dc2: ['127.0.2.1:8443'] };
    const { server, catalog, configEntries } = await setupServer(stops, { federation: fed });
    const actor = { accessorId: 'a', description: 'test', dc: 'dc1' };
    for (const [id, version, port] of [
      ['api-1', 'v1', 21601],
      ['api-2', 'v2', 21602],
    ] as const) {
      await catalog.registerService(
        serviceSchema.parse({
          ID: id,
          Name: 'api',
          Port: 9000,
          Tags: ['v2'],
          Meta: { version },
          Connect: { SidecarService: { Port: port, Check: { TTL: '1h', Status: 'passing' } } },
        }),
      );
    }
    await catalog.registerService(
      serviceSchema.parse({
        Name: 'web',
        Port: 1,
        Connect: { SidecarService: { Port: 21603, Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 9192 }] } } },
      }),
    );
    const web = sidecar(server.address, 'web-sidecar-proxy');
    const gw = gatewayClient(server.address);
    await until(() => web.length >= 1 && gw.pushes.length >= 1, 'first pushes');
    let u = web.at(-1)!.upstreams[0];
    expect([u.protocol, JSON.parse(u.chainJson).StartNode, u.targets.map((t) => t.id)]).toEqual(['tcp', 'resolver:api.default.dc1', ['api.default.dc1']]);
    // Without a resolver a subset name is a tag (both instances carry "v2").
    expect(new RouteTable(gw.pushes.at(-1)!.routes).resolve(`v2.api.default.dc1.internal.${TD}`)).toMatchObject({ ok: true, targets: [{}, {}] });

    await configEntries.put(
      parseConfigEntry({
        Kind: 'service-resolver',
        Name: 'api',
        DefaultSubset: 'v2',
        Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
        Failover: { '*': { Datacenters: ['dc2'] } },
      }),
      {},
      actor,
    );
    await until(() => web.at(-1)!.upstreams[0].targets.length === 2, 'the resolver pushed');
    u = web.at(-1)!.upstreams[0];
    expect(u.targets.map((t) => [t.id, t.healthy, t.endpoints.map((e) => `${e.host}:${e.port} ${e.sni}`)])).toEqual([
      ['v2.api.default.dc1', true, [`127.0.0.1:21602 v2.api.default.dc1.internal.${TD}`]],
      // Through this DC's gateway (the one connected above), with the subset's SNI.
      ['v2.api.default.dc2', false, [`127.0.1.1:8443 v2.api.default.dc2.internal.${TD}`]],
    ]);
    expect(u.endpoints).toEqual(u.targets[0].endpoints);
    await until(() => gw.pushes.at(-1)!.routes.services[0]?.endpoints.some((e) => e.tags?.includes('v1')) === true, 'gateway subsets pushed');
    const table = new RouteTable(gw.pushes.at(-1)!.routes);
    // Now the resolver decides: v2 is api-2 only, although api-1 carries the tag v2.
    expect(table.resolve(`v2.api.default.dc1.internal.${TD}`)).toMatchObject({ ok: true, targets: [{ port: 21602 }] });
    expect(table.resolve(`v1.api.default.dc1.internal.${TD}`)).toMatchObject({ ok: true, targets: [{ port: 21601 }] });
    expect(table.resolve(`v3.api.default.dc1.internal.${TD}`).ok).toBe(false);
  });

  it('refuses a gateway of another DC, with bad addresses, or whose token cannot write its service', async () => {
    const { server } = await setupServer(stops);
    const wrong = gatewayClient(server.address, { dc: 'dc9', lanAddress: 'nowhere', wanAddress: '1.2.3.4:0' });
    await until(() => wrong.fatal() !== undefined, 'refusal');
    expect(wrong.fatal()![0]).toBe('ISTHMUS_ERR_INVALID');
    expect(wrong.fatal()![1]).toBe(
      'hello.lan_address: must be host:port with a port from 1 to 65535; hello.wan_address: must be host:port with a port from 1 to 65535; hello.dc: the gateway is for datacenter dc9, this server serves dc1',
    );

    const denied = await setupServer(stops, { defaultPolicy: 'deny' });
    const gw = gatewayClient(denied.server.address);
    await until(() => gw.fatal() !== undefined, 'refusal');
    expect(gw.fatal()).toEqual(['ISTHMUS_ERR_PERMISSION_DENIED', 'token lacks service:write on mesh-gateway']);
  });

  it('takes a failover order only as a list of datacenter names, naming the field otherwise', () => {
    const upstream = (Config: unknown) => ({
      Name: 'web',
      Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'api', LocalBindPort: 1, Config }] } } },
    });
    expect(serviceSchema.safeParse(upstream({ failover: ['dc2', 'dc3'], other: 1 })).success).toBe(true);
    for (const bad of [{ failover: 'dc2' }, { failover: ['DC 2'] }]) {
      const r = serviceSchema.safeParse(upstream(bad));
      expect(r.success).toBe(false);
      expect(r.error!.issues[0].path.slice(0, 7)).toEqual(['Connect', 'SidecarService', 'Proxy', 'Upstreams', 0, 'Config', 'failover']);
    }
  });

  it('refuses a gateway ID that a service holds already', async () => {
    const { server, catalog } = await setupServer(stops);
    await catalog.registerService(serviceSchema.parse({ ID: 'gw-1', Name: 'web', Port: 80 }));
    const gw = gatewayClient(server.address);
    await until(() => gw.fatal() !== undefined, 'refusal');
    expect(gw.fatal()![0]).toBe('ISTHMUS_ERR_CONFLICT');
  });
});

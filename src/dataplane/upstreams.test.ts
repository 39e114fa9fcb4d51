// Where upstreams to another DC go: through this DC's gateways at their LAN address, read the
// catalog's way (catalog/gateways.ts), the same address federation dials through (catalog-export.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog, serviceSchema } from '../catalog/index.js';
import { MemoryStore } from '../store/index.js';
import { StaticFederationView, TD } from './testing/server-setup.js';
import { localGateways, upstreamEndpoints } from './upstreams.js';

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (stops.length) await stops.pop()!();
});

async function catalog(): Promise<Catalog> {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const c = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '192.0.2.1' });
  await c.start();
  stops.push(
    () => store.stop(),
    () => c.stop(),
  );
  return c;
}

const gateway = (id: string, over: Record<string, unknown>) =>
  serviceSchema.parse({ ID: id, Name: 'mesh-gateway', Kind: 'mesh-gateway', Port: 8443, Check: { TTL: '30s', Status: 'passing' }, ...over });

describe('upstreams through the local gateways', () => {
  it("take a gateway's tagged LAN address over its service Address, as federation does", async () => {
    const c = await catalog();
    await c.registerService(
      gateway('gw-1', { Address: '10.0.0.9', TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 8443 }, wan: { Address: '203.0.113.7', Port: 443 } } }),
    );
    const ctx = { catalog: c, federation: new StaticFederationView('dc1', ['dc2']), dc: 'dc1', trustDomain: TD, gatewayNames: ['mesh-gateway'] };
    expect(localGateways(ctx)).toEqual([{ host: '10.0.0.5', port: 8443 }]);
    expect(upstreamEndpoints(ctx, { DestinationName: 'api', LocalBindPort: 9000 }, 'dc2')).toEqual([
      { host: '10.0.0.5', port: 8443, sni: `api.default.dc2.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc2/svc/api` },
    ]);
  });

  it("go to the other DC's gateways (WAN host:port, IPv6 in brackets) when this DC has none", async () => {
    const c = await catalog();
    const federation = new StaticFederationView('dc1', ['dc2']);
    federation.gatewaysByDc.dc2 = ['198.51.100.1:443', 'nonsense', '[2001:db8::2]:443'];
    const ctx = { catalog: c, federation, dc: 'dc1', trustDomain: TD, gatewayNames: ['mesh-gateway'] };
    expect(
      upstreamEndpoints(ctx, { DestinationName: 'api', DestinationNamespace: 'team', LocalBindPort: 9000 }, 'dc2').map((e) => [e.host, e.port, e.sni]),
    ).toEqual([
      ['198.51.100.1', 443, `api.team.dc2.internal.${TD}`],
      ['2001:db8::2', 443, `api.team.dc2.internal.${TD}`],
    ]);
  });
});

// The gateway addresses a DC exports and dials through, read the catalog's way (catalog/gateways.ts):
// the same gateway gives the same LAN address here as to the sidecars' upstreams (dataplane/upstreams.ts).
import { afterEach, describe, expect, it } from 'vitest';
import { Catalog, serviceSchema } from '../catalog/index.js';
import { MemoryStore } from '../store/index.js';
import { computeExport, localGateways } from './catalog-export.js';
import { parseConfigEntry } from '../config-entries/index.js';

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

describe('localGateways', () => {
  it("takes a gateway's tagged LAN address over its service Address, as the upstreams do", async () => {
    const c = await catalog();
    await c.registerService(
      gateway('gw-1', { Address: '10.0.0.9', TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 8443 }, wan: { Address: '203.0.113.7', Port: 443 } } }),
    );
    expect(localGateways(c)).toEqual({ lan: ['10.0.0.5:8443'], wan: ['203.0.113.7:443'] });
  });

  it('exports WAN addresses sorted and without repeats, a gateway without a tagged WAN by its LAN one, IPv6 in brackets', async () => {
    const c = await catalog();
    await c.registerService(gateway('gw-b', { Address: '10.0.0.2', TaggedAddresses: { wan: { Address: '203.0.113.7', Port: 443 } } }));
    await c.registerService(gateway('gw-a', { Address: '10.0.0.1', TaggedAddresses: { wan: { Address: '203.0.113.7', Port: 443 } } }));
    await c.registerService(gateway('gw-c', { Address: '10.0.0.3' }));
    await c.registerService(gateway('gw-d', { Address: '10.0.0.4', TaggedAddresses: { wan: { Address: '2001:db8::1', Port: 443 } } }));
    expect(localGateways(c)).toEqual({
      lan: ['10.0.0.1:8443', '10.0.0.2:8443', '10.0.0.3:8443', '10.0.0.4:8443'],
      wan: ['10.0.0.3:8443', '203.0.113.7:443', '[2001:db8::1]:443'],
    });
    expect(computeExport(c).gateways).toEqual(localGateways(c).wan);
  });
});

describe('computeExport per subset', () => {
  const app = (id: string, meta: Record<string, string>, status: string, tags: string[] = []) =>
    serviceSchema.parse({ ID: id, Name: 'api', Port: 8080, Meta: meta, Tags: tags, Check: { CheckID: `service:${id}`, TTL: '30s', Status: status } });
  const sidecar = (id: string, status = 'passing') =>
    serviceSchema.parse({
      ID: `${id}-sidecar-proxy`,
      Name: 'api-sidecar-proxy',
      Kind: 'connect-proxy',
      Port: 21000,
      Proxy: { DestinationServiceName: 'api', DestinationServiceID: id },
      Check: { CheckID: `service:${id}-sidecar-proxy`, TTL: '30s', Status: status },
    });

  it("counts healthy sidecars per subset of the resolver, with the instance's checks and warning as healthy unless OnlyPassing", async () => {
    const c = await catalog();
    await c.registerService(app('api-1', { version: 'v1' }, 'passing', ['canary']));
    await c.registerService(sidecar('api-1'));
    await c.registerService(app('api-2', { version: 'v1' }, 'warning'));
    await c.registerService(sidecar('api-2'));
    // A passing sidecar in front of a critical app is not healthy.
    await c.registerService(app('api-3', { version: 'v2' }, 'critical'));
    await c.registerService(sidecar('api-3'));
    await c.registerService(app('api-4', { version: 'v2' }, 'passing'));
    await c.registerService(sidecar('api-4', 'critical'));
    const resolver = parseConfigEntry({
      Kind: 'service-resolver',
      Name: 'api',
      Subsets: {
        v1: { Filter: 'Service.Meta.version == v1' },
        'v1-strict': { Filter: 'Service.Meta.version == v1', OnlyPassing: true },
        v2: { Filter: 'Service.Meta.version == v2' },
        canary: { Filter: 'canary in Service.Tags' },
      },
    });
    const entries = { get: (kind: string, name: string) => (kind === 'service-resolver' && name === 'api' ? resolver : undefined) } as never;
    const s = computeExport(c, entries).services.get('default/api')!;
    expect(s.SubsetHealthy).toEqual({ '': 2, v1: 2, 'v1-strict': 1, v2: 0, canary: 1 });
    // Without a resolver only the whole service is counted.
    expect(computeExport(c).services.get('default/api')!.SubsetHealthy).toEqual({ '': 2 });
  });
});

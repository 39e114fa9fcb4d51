import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from './catalog.js';
import { meshGateways } from './gateways.js';
import { serviceSchema } from './model.js';

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

const gateway = (id: string, over: Record<string, unknown> = {}) =>
  serviceSchema.parse({ ID: id, Name: 'mesh-gateway', Kind: 'mesh-gateway', Port: 8443, Check: { TTL: '30s', Status: 'passing' }, ...over });

describe('meshGateways', () => {
  it('reads LAN as tagged lan, else the service Address, else the node address; WAN as tagged wan, else the LAN one', async () => {
    const c = await catalog();
    await c.registerService(
      gateway('gw-tagged', { Address: '10.0.0.9', TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 8444 }, wan: { Address: '203.0.113.7', Port: 443 } } }),
    );
    await c.registerService(gateway('gw-lan-only', { Address: '10.0.0.10', TaggedAddresses: { lan: { Address: '10.0.0.6', Port: 8445 } } }));
    await c.registerService(gateway('gw-address', { Address: '10.0.0.11' }));
    await c.registerService(gateway('gw-node'));
    await c.registerService(
      gateway('gw-strings', { Address: '10.0.0.12', TaggedAddresses: { lan: '10.0.0.7:8446', wan: { address: 'gw.example', port: 8443 } } }),
    );
    const byId = Object.fromEntries(meshGateways(c).map((g) => [g.id, g]));
    expect(byId['gw-tagged']).toEqual({ id: 'gw-tagged', lan: { host: '10.0.0.5', port: 8444 }, wan: { host: '203.0.113.7', port: 443 } });
    expect(byId['gw-lan-only']).toEqual({ id: 'gw-lan-only', lan: { host: '10.0.0.6', port: 8445 }, wan: { host: '10.0.0.6', port: 8445 } });
    expect(byId['gw-address']).toEqual({ id: 'gw-address', lan: { host: '10.0.0.11', port: 8443 }, wan: { host: '10.0.0.11', port: 8443 } });
    expect(byId['gw-node']).toEqual({ id: 'gw-node', lan: { host: '192.0.2.1', port: 8443 }, wan: { host: '192.0.2.1', port: 8443 } });
    expect(byId['gw-strings']).toEqual({ id: 'gw-strings', lan: { host: '10.0.0.7', port: 8446 }, wan: { host: 'gw.example', port: 8443 } });
  });

  it('ignores a tagged address that is not host and port, and falls back as if it were absent', async () => {
    const c = await catalog();
    await c.registerService(gateway('gw-bad', { Address: '10.0.0.9', TaggedAddresses: { lan: { Address: '10.0.0.5', Port: 0 }, wan: 'nowhere' } }));
    expect(meshGateways(c)).toEqual([{ id: 'gw-bad', lan: { host: '10.0.0.9', port: 8443 }, wan: { host: '10.0.0.9', port: 8443 } }]);
  });

  it('counts only passing instances of Kind mesh-gateway, under the names asked for', async () => {
    const c = await catalog();
    await c.registerService(gateway('gw-up', { Address: '10.0.0.1' }));
    await c.registerService(gateway('gw-down', { Address: '10.0.0.2', Check: { TTL: '30s', Status: 'critical' } }));
    await c.registerService(serviceSchema.parse({ ID: 'impostor', Name: 'mesh-gateway', Address: '10.0.0.3', Port: 8443 }));
    await c.registerService(gateway('gw-east', { Name: 'east-gateway', Address: '10.0.0.4' }));
    expect(meshGateways(c).map((g) => g.id)).toEqual(['gw-up']);
    expect(meshGateways(c, ['mesh-gateway', 'east-gateway']).map((g) => g.id)).toEqual(['gw-up', 'gw-east']);
  });
});

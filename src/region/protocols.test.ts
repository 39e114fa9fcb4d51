import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog, normalizeKeys, serviceSchema } from '../catalog/index.js';
import { ConfigEntries, parseConfigEntry } from '../config-entries/index.js';
import { destinationProtocol } from './protocols.js';

const actor = { accessorId: 'acc-1', description: 'tester', dc: 'dc1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const reg = (x: unknown) => serviceSchema.parse(normalizeKeys(x));

describe('destinationProtocol', () => {
  it('reads service-defaults, then proxy-defaults, then the sidecar registrations, then says tcp', async () => {
    const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
    await store.start();
    const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '127.0.0.1' });
    await catalog.start();
    const entries = new ConfigEntries({ store, dc: 'dc1' });
    cleanups.push(
      () => store.stop(),
      () => catalog.stop(),
    );
    expect(destinationProtocol(entries, catalog, 'api')).toEqual({ protocol: 'tcp', from: 'default' });
    await catalog.registerService(reg({ id: 'api-1', name: 'api', port: 8080, connect: { sidecar_service: { proxy: { config: { protocol: 'http' } } } } }));
    expect(destinationProtocol(entries, catalog, 'api')).toEqual({ protocol: 'http', from: 'its sidecar registrations' });
    // One sidecar that would not parse requests is enough to say tcp.
    await catalog.registerService(reg({ id: 'api-2', name: 'api', port: 8081, connect: { sidecar_service: {} } }));
    expect(destinationProtocol(entries, catalog, 'api')).toEqual({ protocol: 'tcp', from: 'its sidecar registrations' });
    await entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'grpc' } }), {}, actor);
    expect(destinationProtocol(entries, catalog, 'api')).toEqual({ protocol: 'grpc', from: 'proxy-defaults' });
    await entries.put(parseConfigEntry({ Kind: 'service-defaults', Name: 'api', Protocol: 'http2' }), {}, actor);
    expect(destinationProtocol(entries, catalog, 'api')).toEqual({ protocol: 'http2', from: 'service-defaults' });
  });
});

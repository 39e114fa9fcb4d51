import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { ConfigEntries, parseConfigEntry } from '../config-entries/index.js';
import { seedUnchecked } from '../config-entries/testing/seed.js';
import { denyAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerDiscoveryChainRoutes } from './routes-discovery-chain.js';

const TD = 'c0ffee00-0000-4000-8000-000000000001.isthmus';
const actor = { accessorId: 'acc-1', description: 'tester', dc: 'dc1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(authz?: Authorizer) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const configEntries = new ConfigEntries({ store, dc: 'dc1' });
  cleanups.push(() => store.stop());
  const app = testApp((a) => registerDiscoveryChainRoutes(a, { store, configEntries, dc: 'dc1', trustDomain: () => TD }), { authz });
  const call = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, headers: res.headers, body: (await res.json()) as any };
  };
  const write = (raw: Record<string, unknown>) => configEntries.put(parseConfigEntry(raw), {}, actor);
  // Straight into the table, past the write-time chain check: entries stored before that check existed.
  const seed = (raw: Record<string, unknown>) => seedUnchecked(store, raw);
  return { call, write, seed };
}

describe('GET /v1/discovery-chain/:service', () => {
  it('answers an unknown service with the default chain, as Consul does, with X-Consul-Index', async () => {
    const { call } = await setup();
    const r = await call('/v1/discovery-chain/nothing-here');
    expect(r.status).toBe(200);
    expect(r.body.Chain.StartNode).toBe('resolver:nothing-here.default.dc1');
    expect(r.body.Chain.Nodes['resolver:nothing-here.default.dc1'].Resolver.Default).toBe(true);
    expect(Number(r.headers.get('x-consul-index'))).toBeGreaterThan(0);
  });

  it('compiles for ?compile-dc= and follows the written resolver', async () => {
    const { call, write } = await setup();
    await write({ Kind: 'service-resolver', Name: 'api', Failover: { '*': { Datacenters: ['dc3'] } } });
    const r = await call('/v1/discovery-chain/api?compile-dc=dc2');
    expect(r.body.Chain.Datacenter).toBe('dc2');
    expect(r.body.Chain.Nodes['resolver:api.default.dc2'].Resolver.Failover).toEqual({ Targets: ['api.default.dc3'] });
    expect(r.body.Chain.Targets['api.default.dc3'].SNI).toBe(`api.default.dc3.internal.${TD}`);
  });

  it('blocks until the entries change past ?index=', async () => {
    const { call, write } = await setup();
    await write({ Kind: 'service-defaults', Name: 'other' });
    const first = await call('/v1/discovery-chain/api');
    const index = Number(first.headers.get('x-consul-index'));
    const pending = call(`/v1/discovery-chain/api?index=${index}&wait=5s`);
    await write({ Kind: 'service-resolver', Name: 'api', ConnectTimeout: '2s' });
    const next = await pending;
    expect(Number(next.headers.get('x-consul-index'))).toBeGreaterThan(index);
    expect(next.body.Chain.Nodes['resolver:api.default.dc1'].Resolver.ConnectTimeout).toBe('2s');
  });

  it('answers 400 naming the entry for a chain that does not compile, and for bad parameters', async () => {
    const { call, write, seed } = await setup();
    await write({ Kind: 'service-resolver', Name: 'a', Redirect: { Service: 'b' } });
    await seed({ Kind: 'service-resolver', Name: 'b', Redirect: { Service: 'a' } });
    const loop = await call('/v1/discovery-chain/a');
    expect(loop.status).toBe(400);
    expect(loop.body.Violations[0].Field).toBe('service-resolver/b.Redirect.Service');
    const bad = await call('/v1/discovery-chain/a?compile-dc=DC%201');
    expect([bad.status, bad.body.Violations[0].Field]).toEqual([400, 'compile-dc']);
  });

  it('needs service:read on the service', async () => {
    const { call } = await setup({ ...denyAll, serviceRead: (n) => n === 'web' });
    expect((await call('/v1/discovery-chain/web')).status).toBe(200);
    const denied = await call('/v1/discovery-chain/api');
    expect([denied.status, denied.body.Message]).toEqual([403, 'Permission denied: token lacks service:read on api']);
  });
});

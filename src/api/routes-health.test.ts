// Health endpoints: aggregated status and ?passing, connect-capable instances, checks by state
// and node, blocking queries and ACL filtering.
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog, normalizeKeys, serviceSchema } from '../catalog/index.js';
import { allowAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerHealthRoutes } from './routes-health.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const reg = (x: unknown) => serviceSchema.parse(normalizeKeys(x));

async function setup(authz: Authorizer = allowAll) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '10.0.0.1' });
  await catalog.start();
  cleanups.push(
    () => store.stop(),
    () => catalog.stop(),
  );
  const app = testApp((a) => registerHealthRoutes(a, { store, catalog, dc: 'dc1', datacenters: () => ['dc1', 'dc2'] }), { authz });
  const get = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, index: Number(res.headers.get('X-Consul-Index')), body: (await res.json()) as any };
  };
  // web-1 passing (two checks), web-2 warning, web-3 critical with tag canary; web-1 has a sidecar.
  await catalog.registerService(
    reg({
      name: 'web',
      id: 'web-1',
      port: 1,
      tags: ['v1'],
      checks: [
        { ttl: '1m', status: 'passing' },
        { ttl: '1m', status: 'passing' },
      ],
      connect: { sidecar_service: {} },
    }),
  );
  await catalog.registerService(reg({ name: 'web', id: 'web-2', port: 2, tags: ['v1'], check: { ttl: '1m', status: 'warning' } }));
  await catalog.registerService(reg({ name: 'web', id: 'web-3', port: 3, tags: ['canary'], check: { ttl: '1m', status: 'critical' } }));
  await catalog.registerService(reg({ name: 'db', port: 5432, check: { ttl: '1m', status: 'critical' } }));
  return { store, catalog, get };
}

describe('health routes', () => {
  it('answers instances with node and checks; ?passing keeps only all-passing ones; ?tag filters', async () => {
    const { get } = await setup();
    const all = await get('/v1/health/service/web');
    expect(all.body.map((e: any) => e.Service.ID)).toEqual(['web-1', 'web-2', 'web-3']);
    expect(all.body[0]).toMatchObject({ Node: { Node: 'node-1', Address: '10.0.0.1', Datacenter: 'dc1' }, Service: { Service: 'web', Port: 1 } });
    expect(all.body[0].Checks.map((c: any) => c.CheckID)).toEqual(['service:web-1:1', 'service:web-1:2']);
    expect((await get('/v1/health/service/web?passing')).body.map((e: any) => e.Service.ID)).toEqual(['web-1']);
    expect((await get('/v1/health/service/web?passing=false')).body).toHaveLength(3);
    expect((await get('/v1/health/service/web?tag=canary')).body.map((e: any) => e.Service.ID)).toEqual(['web-3']);
    expect((await get('/v1/health/service/none')).body).toEqual([]);
    expect((await get('/v1/health/service/web?dc=nowhere')).status).toBe(404);
  });

  it('lists the sidecars fronting a service under /v1/health/connect', async () => {
    const { get, catalog } = await setup();
    const connect = await get('/v1/health/connect/web');
    expect(connect.body.map((e: any) => [e.Service.ID, e.Service.Kind, e.Service.Proxy.DestinationServiceName])).toEqual([
      ['web-1-sidecar-proxy', 'connect-proxy', 'web'],
    ]);
    expect(connect.body[0].Checks).toEqual([
      expect.objectContaining({
        CheckID: 'service:web-1-sidecar-proxy:1',
        Name: 'Connect Sidecar Listening',
        Status: 'critical',
        ServiceID: 'web-1-sidecar-proxy',
        ServiceName: 'web-sidecar-proxy',
        Type: 'tcp',
      }),
      expect.objectContaining({
        CheckID: 'service:web-1-sidecar-proxy:2',
        Name: 'Connect Sidecar Aliasing web-1',
        Status: 'passing',
        Output: 'All checks passing.',
        ServiceID: 'web-1-sidecar-proxy',
        Type: 'alias',
      }),
    ]);
    expect((await get('/v1/health/connect/web?passing')).body).toEqual([]);
    expect((await get('/v1/health/connect/db')).body).toEqual([]);
    await catalog.deregisterService('web-1');
    expect((await get('/v1/health/connect/web')).body).toEqual([]);
  });

  it('lists checks of a service, by state and by node', async () => {
    const { get } = await setup();
    expect((await get('/v1/health/checks/web')).body.map((c: any) => c.CheckID).sort()).toEqual([
      'service:web-1:1',
      'service:web-1:2',
      'service:web-2',
      'service:web-3',
    ]);
    // web-1's sidecar has Consul's two automatic checks; nothing listens on its port here.
    expect((await get('/v1/health/state/critical')).body.map((c: any) => c.CheckID).sort()).toEqual([
      'service:db',
      'service:web-1-sidecar-proxy:1',
      'service:web-3',
    ]);
    expect((await get('/v1/health/state/warning')).body.map((c: any) => c.CheckID)).toEqual(['service:web-2']);
    expect((await get('/v1/health/state/any')).body).toHaveLength(7);
    expect((await get('/v1/health/state/bogus')).status).toBe(400);
    expect((await get('/v1/health/node/node-1')).body).toHaveLength(7);
    expect((await get('/v1/health/node/other')).body).toEqual([]);
  });

  it('blocks until the service changes, and times out with the same index when nothing does', async () => {
    const { get, catalog } = await setup();
    const first = await get('/v1/health/service/web');
    const t0 = Date.now();
    const idle = await get(`/v1/health/service/web?index=${first.index}&wait=200ms`);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    expect(idle.index).toBe(first.index);

    const pending = get(`/v1/health/service/web?passing&index=${first.index}&wait=10s`);
    setTimeout(() => void catalog.updateTtl('service:web-2', 'passing', 'recovered'), 50);
    const woke = await pending;
    expect(woke.index).toBeGreaterThan(first.index);
    expect(woke.body.map((e: any) => e.Service.ID)).toEqual(['web-1', 'web-2']);
  });

  it('answers an empty list for services the token cannot read and drops their checks from lists', async () => {
    const { get } = await setup({ ...allowAll, serviceRead: (n) => n === 'db' });
    expect((await get('/v1/health/service/web')).body).toEqual([]);
    expect((await get('/v1/health/connect/web')).body).toEqual([]);
    expect((await get('/v1/health/checks/web')).body).toEqual([]);
    expect((await get('/v1/health/service/db')).body).toHaveLength(1);
    expect((await get('/v1/health/state/critical')).body.map((c: any) => c.CheckID)).toEqual(['service:db']);
    expect((await get('/v1/health/node/node-1')).body.map((c: any) => c.ServiceName)).toEqual(['db']);
  });
});

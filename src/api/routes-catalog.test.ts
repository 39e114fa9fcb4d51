import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog, normalizeKeys, serviceSchema } from '../catalog/index.js';
import { allowAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerAgentRoutes } from './routes-agent.js';
import { registerCatalogRoutes } from './routes-catalog.js';
import { registerHealthRoutes } from './routes-health.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup() {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '127.0.0.1' });
  await catalog.start();
  cleanups.push(
    () => store.stop(),
    () => catalog.stop(),
  );
  return { store, catalog };
}

const reg = (x: unknown) => serviceSchema.parse(normalizeKeys(x));

describe('catalog routes', () => {
  it('serves Consul shapes; blocking health queries wake on change; ACL filters reads', async () => {
    const { store, catalog } = await setup();
    const onlyWeb: Authorizer = { ...allowAll, serviceRead: (n) => n === 'web', serviceWrite: (n) => n === 'web' };
    const mount = (app: Parameters<typeof registerAgentRoutes>[0]) => {
      const deps = { store, catalog, dc: 'dc1', datacenters: () => ['dc1'] };
      registerAgentRoutes(app, deps);
      registerCatalogRoutes(app, deps);
      registerHealthRoutes(app, deps);
    };
    const app = testApp(mount);
    const limited = testApp(mount, { authz: onlyWeb });
    expect((await app.request('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'web', Port: 80, Tags: ['a'] }) })).status).toBe(200);
    expect((await app.request('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'db', Port: 5432 }) })).status).toBe(200);
    expect(await (await limited.request('/v1/catalog/services')).json()).toEqual({ web: ['a'] });
    expect(await (await limited.request('/v1/catalog/service/db')).json()).toEqual([]);
    expect((await limited.request('/v1/agent/service/register', { method: 'PUT', body: JSON.stringify({ Name: 'db', Port: 1 }) })).status).toBe(403);

    const first = await app.request('/v1/health/service/web');
    const index = Number(first.headers.get('X-Consul-Index'));
    const pending = app.request(`/v1/health/service/web?index=${index}&wait=5s`);
    setTimeout(() => void catalog.registerService(reg({ name: 'web', id: 'web-2', port: 81 })), 100);
    const res = await pending;
    expect(((await res.json()) as unknown[]).length).toBe(2);
    expect(Number(res.headers.get('X-Consul-Index'))).toBeGreaterThan(index);

    const bad = await app.request('/v1/agent/check/update/service:web', { method: 'PUT', body: JSON.stringify({ Status: 'fine' }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).Violations[0].Field).toBe('Status');
    expect((await app.request('/v1/agent/check/pass/nope', { method: 'PUT' })).status).toBe(404);
    expect((await app.request('/v1/health/state/odd')).status).toBe(400);
    const tf = await app.request('/v1/catalog/register', {
      method: 'PUT',
      body: JSON.stringify({
        Node: 'ext',
        Address: '10.1.1.1',
        Service: { Service: 'legacy', Port: 9000 },
        Check: { CheckID: 'ext-ok', Status: 'passing', ServiceID: 'legacy' },
      }),
    });
    expect(tf.status).toBe(200);
    const legacy: any = await (await app.request('/v1/health/service/legacy?passing')).json();
    expect(legacy[0]).toMatchObject({
      Node: { Node: 'ext', Address: '10.1.1.1' },
      Service: { ID: 'legacy', Port: 9000 },
      Checks: [{ CheckID: 'ext-ok', Status: 'passing' }],
    });
  });
});

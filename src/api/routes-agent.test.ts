// Agent endpoints: registration with a sidecar, TTL updates, check registration, validation and ACLs.
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog } from '../catalog/index.js';
import { allowAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerAgentRoutes } from './routes-agent.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(authz: Authorizer = allowAll) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const catalog = new Catalog({ store, dc: 'dc1', nodeName: 'node-1', nodeAddress: '10.0.0.1' });
  await catalog.start();
  cleanups.push(
    () => store.stop(),
    () => catalog.stop(),
  );
  const app = testApp((a) => registerAgentRoutes(a, { store, catalog, dc: 'dc1', datacenters: () => ['dc1'] }), { authz });
  const put = (path: string, body?: unknown) => app.request(path, { method: 'PUT', ...(body !== undefined && { body: JSON.stringify(body) }) });
  const get = async (path: string) => {
    const res = await app.request(path);
    return { status: res.status, body: (await res.json()) as any };
  };
  return { store, catalog, app, put, get };
}

describe('agent routes', () => {
  it('registers a service with its sidecar and check, lists them, and deregisters both', async () => {
    const { put, get } = await setup();
    const res = await put('/v1/agent/service/register', {
      Name: 'web',
      Port: 8080,
      Tags: ['v2'],
      Check: { TTL: '30s' },
      Connect: { SidecarService: { Proxy: { Upstreams: [{ DestinationName: 'db', LocalBindPort: 9191 }] } } },
    });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');

    const services = await get('/v1/agent/services');
    expect(Object.keys(services.body).sort()).toEqual(['web', 'web-sidecar-proxy']);
    expect(services.body.web).toMatchObject({ ID: 'web', Service: 'web', Tags: ['v2'], Port: 8080, Kind: '', Datacenter: 'dc1' });
    const sidecar = await get('/v1/agent/service/web-sidecar-proxy');
    expect(sidecar.body).toMatchObject({
      Kind: 'connect-proxy',
      Port: 21000,
      Proxy: {
        DestinationServiceName: 'web',
        DestinationServiceID: 'web',
        LocalServicePort: 8080,
        Upstreams: [{ DestinationName: 'db', LocalBindPort: 9191 }],
      },
    });
    const checks = await get('/v1/agent/checks');
    expect(checks.body['service:web']).toMatchObject({ CheckID: 'service:web', ServiceID: 'web', ServiceName: 'web', Status: 'critical', Node: 'node-1' });
    // The sidecar has no checks of its own, so it gets Consul's two; its alias follows web's critical TTL check.
    expect(Object.keys(checks.body).sort()).toEqual(['service:web', 'service:web-sidecar-proxy:1', 'service:web-sidecar-proxy:2']);
    expect(checks.body['service:web-sidecar-proxy:1']).toMatchObject({
      Name: 'Connect Sidecar Listening',
      ServiceID: 'web-sidecar-proxy',
      ServiceName: 'web-sidecar-proxy',
      Status: 'critical',
      Type: 'tcp',
    });
    expect(checks.body['service:web-sidecar-proxy:2']).toMatchObject({
      Name: 'Connect Sidecar Aliasing web',
      ServiceID: 'web-sidecar-proxy',
      Status: 'critical',
      Output: `Aliased check "Service 'web' check" failing: `,
      Type: 'alias',
    });

    expect((await put('/v1/agent/service/deregister/web')).status).toBe(200);
    expect((await get('/v1/agent/services')).body).toEqual({});
    expect((await get('/v1/agent/checks')).body).toEqual({});
    expect((await get('/v1/agent/service/web')).status).toBe(404);
    expect((await put('/v1/agent/service/deregister/web')).status).toBe(404);
  });

  it('rejects a bad registration naming every field, and stores nothing', async () => {
    const { put, store } = await setup();
    const before = store.index();
    const res = await put('/v1/agent/service/register', {
      Name: 'we b',
      Port: -1,
      Check: { HTTP: 'http://127.0.0.1:1/h' },
      Proxy: { Upstreams: [{ DestinationName: 'db', LocalBindPort: 'x' }] },
    });
    expect(res.status).toBe(400);
    const fields = ((await res.json()) as { Violations: { Field: string }[] }).Violations.map((v) => v.Field);
    expect(fields).toEqual(expect.arrayContaining(['Name', 'Port', 'Check.Interval', 'Proxy.Upstreams[0].LocalBindPort']));
    expect(store.index()).toBe(before);
  });

  it('registers alias checks, and refuses one that is also another kind of check, naming the rule', async () => {
    const { put, get, store } = await setup();
    await put('/v1/agent/service/register', { Name: 'db', Port: 5432, Check: { TTL: '30s', Status: 'warning' } });
    expect((await put('/v1/agent/check/register', { Name: 'db alive', alias_service: 'db' })).status).toBe(200);
    expect((await get('/v1/agent/checks')).body['db alive']).toMatchObject({ Type: 'alias', Status: 'warning', ServiceID: '' });
    const before = store.index();
    const bad = await put('/v1/agent/check/register', { Name: 'both', AliasService: 'db', TCP: '127.0.0.1:1', Interval: '10s' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { Violations: { Message: string }[] }).Violations[0].Message).toBe(
      'exactly one of TTL, HTTP, TCP, AliasService/AliasNode must be set',
    );
    expect((await put('/v1/agent/check/pass/db%20alive')).status).toBe(400);
    expect(store.index()).toBe(before);
  });

  it('accepts snake_case keys and defaults the ID to the name', async () => {
    const { put, get } = await setup();
    expect((await put('/v1/agent/service/register', { name: 'api', port: 9000, meta: { Team_Name: 'x' }, check: { ttl: '10s' } })).status).toBe(200);
    const svc = await get('/v1/agent/service/api');
    expect(svc.body).toMatchObject({ ID: 'api', Service: 'api', Port: 9000, Meta: { Team_Name: 'x' } });
  });

  it('updates TTL checks with pass, warn, fail and update; refuses non-TTL and unknown checks', async () => {
    const { put, get, store } = await setup();
    await put('/v1/agent/service/register', { Name: 'web', Port: 1, Check: { TTL: '30s' } });
    await put('/v1/agent/check/register', { Name: 'port', ServiceID: 'web', TCP: '127.0.0.1:1', Interval: '1h' });
    const status = async () => (await get('/v1/agent/checks')).body['service:web'];

    expect((await put('/v1/agent/check/pass/service:web?note=all%20good')).status).toBe(200);
    expect(await status()).toMatchObject({ Status: 'passing', Output: 'all good' });
    await put('/v1/agent/check/warn/service:web');
    expect((await status()).Status).toBe('warning');
    await put('/v1/agent/check/fail/service:web?note=down');
    expect(await status()).toMatchObject({ Status: 'critical', Output: 'down' });
    expect((await put('/v1/agent/check/update/service:web', { Status: 'passing', Output: 'back' })).status).toBe(200);
    expect(await status()).toMatchObject({ Status: 'passing', Output: 'back' });

    const idx = store.index();
    const notTtl = await put('/v1/agent/check/pass/port');
    expect(notTtl.status).toBe(400);
    expect(await notTtl.text()).toMatch(/does not have associated TTL/);
    const unknown = await put('/v1/agent/check/pass/nope');
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toMatch(/CheckID \\?"nope\\?" does not have associated TTL/);
    expect(store.index()).toBe(idx);
  });

  it('registers and deregisters a check on its own, and replaces checks only when asked', async () => {
    const { put, get } = await setup();
    await put('/v1/agent/service/register', { Name: 'web', Port: 1, Checks: [{ TTL: '1m' }, { TTL: '1m' }] });
    expect(Object.keys((await get('/v1/agent/checks')).body).sort()).toEqual(['service:web:1', 'service:web:2']);

    await put('/v1/agent/service/register', { Name: 'web', Port: 1, Checks: [{ TTL: '1m' }] });
    expect(Object.keys((await get('/v1/agent/checks')).body).sort()).toEqual(['service:web:1', 'service:web:2']);
    await put('/v1/agent/service/register?replace-existing-checks', { Name: 'web', Port: 1, Checks: [{ CheckID: 'only', TTL: '1m' }] });
    expect(Object.keys((await get('/v1/agent/checks')).body)).toEqual(['only']);

    expect((await put('/v1/agent/check/register', { Name: 'extra', ServiceID: 'web', TTL: '1m' })).status).toBe(200);
    expect((await get('/v1/agent/checks')).body.extra).toMatchObject({ ServiceID: 'web', Status: 'critical' });
    expect((await put('/v1/agent/check/register', { Name: 'orphan', ServiceID: 'none', TTL: '1m' })).status).toBe(404);
    const bad = await put('/v1/agent/check/register', { Name: 'both', TTL: '1m', HTTP: 'http://x/' });
    expect(bad.status).toBe(400);
    expect((await put('/v1/agent/check/deregister/extra')).status).toBe(200);
    expect((await get('/v1/agent/checks')).body.extra).toBeUndefined();
    expect((await put('/v1/agent/check/deregister/extra')).status).toBe(404);
  });

  it('filters reads and refuses writes the token has no permission for', async () => {
    const onlyWeb: Authorizer = { ...allowAll, serviceRead: (n) => n === 'web', serviceWrite: (n) => n === 'web', operatorWrite: () => false };
    const { put, get, catalog } = await setup(onlyWeb);
    expect((await put('/v1/agent/service/register', { Name: 'web', Port: 1, Check: { TTL: '1m' } })).status).toBe(200);
    expect((await put('/v1/agent/service/register', { Name: 'db', Port: 2 })).status).toBe(403);
    expect(catalog.agentService('db')).toBeUndefined();

    // Registered behind the API's back, as another token could have done.
    await catalog.registerService({ Name: 'db', Port: 2, Check: { TTL: 60_000 } } as never);
    expect(Object.keys((await get('/v1/agent/services')).body)).toEqual(['web']);
    expect(Object.keys((await get('/v1/agent/checks')).body)).toEqual(['service:web']);
    expect((await get('/v1/agent/service/db')).status).toBe(403);
    expect((await put('/v1/agent/check/pass/service:db')).status).toBe(403);
    expect((await put('/v1/agent/service/deregister/db')).status).toBe(403);
    expect((await put('/v1/agent/check/register', { Name: 'node-disk', TTL: '1m' })).status).toBe(403);
    expect(catalog.agentService('db')).toBeDefined();
  });
});

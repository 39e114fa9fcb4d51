// Agent endpoints: registration with a sidecar, TTL updates, check registration, validation and ACLs.
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Catalog, CheckRunner } from '../catalog/index.js';
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

  describe('maintenance', () => {
    const DEFAULT_REASON = 'Maintenance mode is enabled for this service, but no reason was provided. This is a default message.';

    async function withRunner(authz: Authorizer = allowAll) {
      const t = await setup(authz);
      const runner = new CheckRunner({ store: t.store, catalog: t.catalog, nodeName: 'node-1' });
      await runner.start();
      cleanups.push(() => runner.stop());
      return t;
    }
    const until = async (fn: () => boolean) => {
      const end = Date.now() + 5000;
      while (!fn()) {
        if (Date.now() > end) throw new Error('condition not met in time');
        await new Promise((r) => setTimeout(r, 10));
      }
    };

    it('adds a critical check with the reason, takes the sidecar out of passing endpoints, and removes it on disable', async () => {
      const { put, get, catalog } = await withRunner();
      await put('/v1/agent/service/register', { Name: 'web', Port: 8080, Check: { TTL: '1m' }, Connect: { SidecarService: { Port: 21000 } } });
      await put('/v1/agent/check/pass/service:web');
      // The sidecar's listening check has nothing to dial here; pass it by hand so only maintenance decides.
      await catalog.setCheckResult('node-1/service:web-sidecar-proxy:1', 'passing', 'up');
      await until(() => catalog.connectInstances('web', { passingOnly: true }).length === 1);

      expect((await put('/v1/agent/service/maintenance/web?enable=true&reason=kernel%20upgrade')).status).toBe(200);
      const checks = (await get('/v1/agent/checks')).body;
      expect(checks['_service_maintenance:web']).toEqual({
        Node: 'node-1',
        CheckID: '_service_maintenance:web',
        Name: 'Service Maintenance Mode',
        Status: 'critical',
        Notes: 'kernel upgrade',
        Output: '',
        ServiceID: 'web',
        ServiceName: 'web',
        ServiceTags: [],
        Namespace: 'default',
        Type: '',
        Definition: expect.anything(),
      });
      expect(catalog.instances('web', { passingOnly: true })).toEqual([]);
      // The sidecar's alias check follows its service into maintenance, so callers lose the endpoint.
      await until(() => catalog.agentCheck('service:web-sidecar-proxy:2')?.Status === 'critical');
      expect(catalog.agentCheck('service:web-sidecar-proxy:2')!.Output).toBe('Aliased check "Service Maintenance Mode" failing: ');
      expect(catalog.connectInstances('web', { passingOnly: true })).toEqual([]);

      // Enabling again keeps the first reason, as Consul does.
      await put('/v1/agent/service/maintenance/web?enable=1&reason=other');
      expect(catalog.agentCheck('_service_maintenance:web')!.Notes).toBe('kernel upgrade');

      expect((await put('/v1/agent/service/maintenance/web?enable=false')).status).toBe(200);
      expect(catalog.agentCheck('_service_maintenance:web')).toBeUndefined();
      await until(() => catalog.connectInstances('web', { passingOnly: true }).length === 1);
      expect(catalog.instances('web', { passingOnly: true })).toHaveLength(1);
      // Disabling what is not in maintenance is not an error and writes nothing.
      expect((await put('/v1/agent/service/maintenance/web?enable=false')).status).toBe(200);
    });

    it("uses Consul's default reason, and nothing marks the check passing: not the runner, TTL updates or re-registration", async () => {
      const { put, store, catalog } = await withRunner();
      await put('/v1/agent/service/register', { Name: 'web', Port: 8080, Check: { TTL: '1m' }, Connect: { SidecarService: {} } });
      await put('/v1/agent/service/maintenance/web?enable=true');
      expect(catalog.agentCheck('_service_maintenance:web')).toMatchObject({ Notes: DEFAULT_REASON, Status: 'critical' });

      const before = store.index();
      for (const verb of ['pass', 'warn', 'fail']) expect((await put(`/v1/agent/check/${verb}/_service_maintenance:web`)).status).toBe(400);
      expect((await put('/v1/agent/check/update/_service_maintenance:web', { Status: 'passing' })).status).toBe(400);
      expect(store.index()).toBe(before);

      // Registering again, even replacing checks, and re-registering the sidecar keep maintenance on.
      await put('/v1/agent/service/register?replace-existing-checks', { Name: 'web', Port: 8080, Check: { TTL: '1m' }, Connect: { SidecarService: {} } });
      await put('/v1/agent/check/pass/service:web');
      // The runner has seen the pass (the alias follows web's checks); the maintenance check is untouched.
      await until(() => catalog.agentCheck('service:web-sidecar-proxy:2')?.Output === 'Aliased check "Service Maintenance Mode" failing: ');
      expect(catalog.agentCheck('_service_maintenance:web')).toMatchObject({ Status: 'critical', Notes: DEFAULT_REASON, Output: '' });
      expect(catalog.agentCheck('service:web-sidecar-proxy:2')!.Status).toBe('critical');

      // Deregistering the service takes its maintenance check with it.
      await put('/v1/agent/service/deregister/web');
      expect(catalog.agentCheck('_service_maintenance:web')).toBeUndefined();
    });

    it('puts the node in maintenance, which every instance on it follows', async () => {
      const { put, catalog } = await withRunner();
      await put('/v1/agent/service/register', { Name: 'web', Port: 8080 });
      expect(catalog.instances('web', { passingOnly: true })).toHaveLength(1);
      expect((await put('/v1/agent/maintenance?enable=true&reason=rack%20move')).status).toBe(200);
      expect(catalog.agentCheck('_node_maintenance')).toMatchObject({
        CheckID: '_node_maintenance',
        Name: 'Node Maintenance Mode',
        Notes: 'rack move',
        Status: 'critical',
        ServiceID: '',
      });
      expect(catalog.instances('web', { passingOnly: true })).toEqual([]);
      await put('/v1/agent/maintenance?enable=false');
      expect(catalog.agentCheck('_node_maintenance')).toBeUndefined();
      expect(catalog.instances('web', { passingOnly: true })).toHaveLength(1);
      await put('/v1/agent/maintenance?enable=true');
      expect(catalog.agentCheck('_node_maintenance')!.Notes).toBe(
        'Maintenance mode is enabled for this node, but no reason was provided. This is a default message.',
      );
    });

    it('refuses a missing or non-boolean enable naming it, an unknown service with 404, and writes without permission', async () => {
      const onlyWeb: Authorizer = { ...allowAll, serviceWrite: (n) => n === 'web', operatorWrite: () => false };
      const { put, store, catalog } = await setup(onlyWeb);
      await put('/v1/agent/service/register', { Name: 'web', Port: 1 });
      await catalog.registerService({ Name: 'db', Port: 2 } as never);
      const before = store.index();

      for (const path of ['/v1/agent/service/maintenance/web', '/v1/agent/service/maintenance/web?enable=yes', '/v1/agent/maintenance?enable=']) {
        const res = await put(path);
        expect(res.status, path).toBe(400);
        const body = (await res.json()) as { Error: string; Violations: { Field: string }[] };
        expect(body.Error).toBe('ISTHMUS_ERR_INVALID');
        expect(body.Violations.map((v) => v.Field)).toEqual(['enable']);
      }
      const unknown = await put('/v1/agent/service/maintenance/nope?enable=true');
      expect(unknown.status).toBe(404);
      expect(((await unknown.json()) as { Message: string }).Message).toBe('No service registered with ID "nope"');
      expect((await put('/v1/agent/service/maintenance/db?enable=true')).status).toBe(403);
      expect((await put('/v1/agent/maintenance?enable=true')).status).toBe(403);
      expect(store.index()).toBe(before);
      expect((await put('/v1/agent/service/maintenance/web?enable=true')).status).toBe(200);
    });
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { ConfigEntries } from '../config-entries/index.js';
import { denyAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerConfigRoutes } from './routes-config.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(authz?: Authorizer) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const configEntries = new ConfigEntries({ store, dc: 'dc1' });
  cleanups.push(() => store.stop());
  const app = testApp((a) => registerConfigRoutes(a, { store, configEntries }), { authz });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as any };
  };
  return { store, configEntries, call };
}

describe('config entry routes', () => {
  it("writes, reads, lists and deletes in Consul's shapes", async () => {
    const { call } = await setup();
    expect((await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'web', Protocol: 'http' })).body).toBe(true);
    await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'grpc' });
    const got = await call('GET', '/v1/config/service-defaults/web');
    expect(got.status).toBe(200);
    expect(got.body).toEqual({ Kind: 'service-defaults', Name: 'web', Protocol: 'http', CreateIndex: expect.any(Number), ModifyIndex: expect.any(Number) });
    expect(Number(got.headers.get('x-consul-index'))).toBeGreaterThan(0);
    const list = await call('GET', '/v1/config/service-defaults');
    expect(list.body.map((e: { Name: string }) => e.Name)).toEqual(['api', 'web']);
    expect((await call('GET', '/v1/config/service-router')).body).toEqual([]);
    const missing = await call('GET', '/v1/config/service-resolver/web');
    expect([missing.status, missing.body.Error]).toEqual([404, 'ISTHMUS_ERR_NOT_FOUND']);
    const del = await call('DELETE', '/v1/config/service-defaults/api');
    expect([del.status, del.body]).toEqual([200, {}]);
    expect((await call('GET', '/v1/config/service-defaults/api')).status).toBe(404);
  });

  it('check-and-set on PUT and DELETE answers true or false', async () => {
    const { call } = await setup();
    expect((await call('PUT', '/v1/config?cas=0', { Kind: 'service-defaults', Name: 'web', Protocol: 'http' })).body).toBe(true);
    expect((await call('PUT', '/v1/config?cas=0', { Kind: 'service-defaults', Name: 'web', Protocol: 'grpc' })).body).toBe(false);
    const at = (await call('GET', '/v1/config/service-defaults/web')).body.ModifyIndex;
    // A read entry written back as it is (indexes included) with its ModifyIndex as cas.
    const read = (await call('GET', '/v1/config/service-defaults/web')).body;
    expect((await call('PUT', `/v1/config?cas=${at}`, { ...read, Protocol: 'grpc' })).body).toBe(true);
    expect((await call('GET', '/v1/config/service-defaults/web')).body.Protocol).toBe('grpc');
    expect((await call('DELETE', `/v1/config/service-defaults/web?cas=${at}`)).body).toBe(false);
    const now = (await call('GET', '/v1/config/service-defaults/web')).body.ModifyIndex;
    expect((await call('DELETE', `/v1/config/service-defaults/web?cas=${now}`)).body).toBe(true);
    const bad = await call('PUT', '/v1/config?cas=x', { Kind: 'service-defaults', Name: 'web' });
    expect([bad.status, bad.body.Violations[0].Field]).toEqual([400, 'cas']);
  });

  it('answers 400 naming every field path, an unknown kind, and the router on a tcp service', async () => {
    const { call } = await setup();
    const r = await call('PUT', '/v1/config', {
      Kind: 'service-router',
      Name: 'web',
      Routes: [{ Match: { HTTP: { PathRegex: '(?!x)' } }, Destination: { Servce: 'x' } }],
    });
    expect(r.status).toBe(400);
    expect(r.body.Error).toBe('ISTHMUS_ERR_INVALID');
    expect(r.body.Violations.map((v: { Field: string }) => v.Field)).toEqual(['Routes[0].Match.HTTP.PathRegex', 'Routes[0].Destination.Servce']);
    const tcp = await call('PUT', '/v1/config', { Kind: 'service-router', Name: 'web', Routes: [] });
    expect(tcp.status).toBe(400);
    expect(tcp.body.Violations[0].Message).toMatch(/protocol "tcp" that does not permit advanced routing/);
    expect((await call('GET', '/v1/config/mesh')).status).toBe(400);
    expect((await call('PUT', '/v1/config', undefined)).status).toBe(400);
  });

  it('answers 400 at Subsets.<name>.Filter for a subset filter that does not parse, and stores nothing', async () => {
    const { call } = await setup();
    const bad = await call('PUT', '/v1/config', {
      Kind: 'service-resolver',
      Name: 'api',
      Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version = v2' } },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.Violations).toEqual([{ Field: 'Subsets.v2.Filter', Message: expect.stringMatching(/not a valid filter expression/) }]);
    expect((await call('GET', '/v1/config/service-resolver/api')).status).toBe(404);
  });

  it('blocks a list read until an entry changes past ?index=', async () => {
    const { call } = await setup();
    await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'web', Protocol: 'http' });
    const first = await call('GET', '/v1/config/service-defaults');
    const index = Number(first.headers.get('x-consul-index'));
    const started = Date.now();
    const blocked = call('GET', `/v1/config/service-defaults?index=${index}&wait=5s`);
    setTimeout(() => void call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'http' }), 100);
    const next = await blocked;
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(Number(next.headers.get('x-consul-index'))).toBeGreaterThan(index);
    expect(next.body.map((e: { Name: string }) => e.Name)).toEqual(['api', 'web']);
  });

  it('checks service:write / service:read on the name, operator for proxy-defaults', async () => {
    const webOnly: Authorizer = {
      ...denyAll,
      serviceRead: (n) => n === 'web',
      serviceWrite: (n) => n === 'web',
    };
    const { call, configEntries } = await setup(webOnly);
    expect((await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'web', Protocol: 'http' })).body).toBe(true);
    const denied = await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'db', Protocol: 'http' });
    expect([denied.status, denied.body.Message]).toEqual([403, 'Permission denied: token lacks service:write on db']);
    const pd = await call('PUT', '/v1/config', { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    expect([pd.status, pd.body.Message]).toEqual([403, 'Permission denied: token lacks operator:write']);
    await configEntries.put({ Kind: 'service-defaults', Name: 'db' }, {}, { accessorId: 'x', description: 'x', dc: 'dc1' });
    expect((await call('GET', '/v1/config/service-defaults/db')).status).toBe(403);
    expect((await call('DELETE', '/v1/config/service-defaults/db')).status).toBe(403);
    // A list shows only what the token may read.
    expect((await call('GET', '/v1/config/service-defaults')).body.map((e: { Name: string }) => e.Name)).toEqual(['web']);
    expect((await call('GET', '/v1/config/proxy-defaults/global')).status).toBe(403);
  });
});

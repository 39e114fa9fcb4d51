import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { ConfigEntries } from '../config-entries/index.js';
import { Intentions } from '../intentions/index.js';
import { denyAll, type Authorizer } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerConfigRoutes } from './routes-config.js';
import { registerIntentionRoutes } from './routes-intentions.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(authz?: Authorizer) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  // Wired both ways as the region wires them (the catalog fallback aside: no sidecar here).
  const intentions: Intentions = new Intentions({
    store,
    dc: 'dc1',
    defaultAllow: () => false,
    trustDomain: () => 'td.isthmus',
    protocolOf: ({ name }) => configEntries.protocolSource(name) ?? { protocol: 'tcp', from: 'default' },
  });
  const configEntries: ConfigEntries = new ConfigEntries({
    store,
    dc: 'dc1',
    l7Intentions: () => intentions.list().flatMap((i) => (i.Permissions?.length ? [{ destination: i.DestinationName, id: i.ID }] : [])),
  });
  await intentions.start();
  cleanups.push(
    () => store.stop(),
    () => intentions.stop(),
  );
  const app = testApp(
    (a) => {
      registerIntentionRoutes(a, { store, intentions });
      registerConfigRoutes(a, { store, configEntries, intentions });
    },
    { authz },
  );
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, headers: res.headers, body: (await res.json()) as any };
  };
  return { store, configEntries, intentions, call };
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

  it('answers 400 for a write or delete that would leave a discovery chain uncompilable, naming the field, and keeps what was stored', async () => {
    const { call } = await setup();
    await call('PUT', '/v1/config', { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    const subsets = { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } };
    expect((await call('PUT', '/v1/config', { Kind: 'service-resolver', Name: 'api', Subsets: subsets })).body).toBe(true);
    const split = {
      Kind: 'service-splitter',
      Name: 'web',
      Splits: [
        { Weight: 50, Service: 'api', ServiceSubset: 'v1' },
        { Weight: 50, Service: 'api', ServiceSubset: 'v3' },
      ],
    };
    const bad = await call('PUT', '/v1/config', split);
    expect([bad.status, bad.body.Error, bad.body.Violations]).toEqual([
      400,
      'ISTHMUS_ERR_INVALID',
      [{ Field: 'Splits[1].ServiceSubset', Message: 'service "api" does not have a subset named "v3"' }],
    ]);
    expect((await call('GET', '/v1/config/service-splitter/web')).status).toBe(404);
    split.Splits[1].ServiceSubset = 'v2';
    expect((await call('PUT', '/v1/config', split)).body).toBe(true);
    const del = await call('DELETE', '/v1/config/service-resolver/api');
    expect([del.status, del.body.Violations]).toEqual([
      400,
      [
        { Field: 'service-splitter/web.Splits[0].ServiceSubset', Message: 'service "api" does not have a subset named "v1"' },
        { Field: 'service-splitter/web.Splits[1].ServiceSubset', Message: 'service "api" does not have a subset named "v2"' },
      ],
    ]);
    expect((await call('GET', '/v1/config/service-resolver/api')).body.Subsets).toEqual(subsets);
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

  it('stores a service-intentions entry as the intentions of its destination, and builds it back from them', async () => {
    const { call } = await setup();
    const entry = {
      Kind: 'service-intentions',
      Name: 'api',
      Meta: { owner: 'team-a' },
      Sources: [
        { Name: 'web', Action: 'allow', Description: 'the front end' },
        { Name: '*', Action: 'deny' },
      ],
    };
    expect((await call('PUT', '/v1/config', entry)).body).toBe(true);
    const listed = (await call('GET', '/v1/connect/intentions')).body.sort((a: any, b: any) => b.Precedence - a.Precedence);
    expect(listed.map((i: any) => [i.SourceName, i.DestinationName, i.Action, i.Precedence])).toEqual([
      ['web', 'api', 'allow', 9],
      ['*', 'api', 'deny', 8],
    ]);
    expect(listed[0]).not.toHaveProperty('EntryMeta');
    const webId = listed[0].ID;
    const got = await call('GET', '/v1/config/service-intentions/api');
    expect(got.status).toBe(200);
    expect(got.body).toEqual({
      Kind: 'service-intentions',
      Name: 'api',
      Meta: { owner: 'team-a' },
      Sources: [
        expect.objectContaining({ Name: 'web', Action: 'allow', Precedence: 9, Type: 'consul', Description: 'the front end', LegacyID: webId }),
        expect.objectContaining({ Name: '*', Action: 'deny', Precedence: 8, Type: 'consul' }),
      ],
      CreateIndex: expect.any(Number),
      ModifyIndex: expect.any(Number),
    });
    // Written back as read, with one source dropped and one changed: the pair kept keeps its ID.
    const back = { ...got.body, Sources: [{ ...got.body.Sources[0], Action: 'deny' }] };
    expect((await call('PUT', `/v1/config?cas=${got.body.ModifyIndex}`, back)).body).toBe(true);
    expect((await call('PUT', `/v1/config?cas=${got.body.ModifyIndex}`, back)).body).toBe(false);
    const after = (await call('GET', '/v1/connect/intentions')).body;
    expect(after.map((i: any) => [i.ID, i.SourceName, i.Action])).toEqual([[webId, 'web', 'deny']]);
    // An intention written through the intentions API joins the entry.
    await call('PUT', '/v1/connect/intentions/exact?source=db&destination=api', { Action: 'allow' });
    const joined = (await call('GET', '/v1/config/service-intentions/api')).body;
    expect(joined.Sources.map((s: any) => s.Name)).toEqual(['db', 'web']);
    expect(joined.Meta).toEqual({ owner: 'team-a' });
    expect((await call('GET', '/v1/config/service-intentions')).body.map((e: any) => e.Name)).toEqual(['api']);
    // The wildcard destination is an entry like any other (L4 sources only).
    expect((await call('PUT', '/v1/config', { Kind: 'service-intentions', Name: '*', Sources: [{ Name: 'web', Action: 'deny' }] })).body).toBe(true);
    expect((await call('GET', '/v1/config/service-intentions/*')).body.Sources).toEqual([
      expect.objectContaining({ Name: 'web', Action: 'deny', Precedence: 6 }),
    ]);
    expect((await call('GET', '/v1/config/service-intentions')).body.map((e: any) => e.Name)).toEqual(['*', 'api']);
    expect((await call('DELETE', '/v1/config/service-intentions/*')).body).toEqual({});
    expect((await call('DELETE', '/v1/config/service-intentions/api')).body).toEqual({});
    expect((await call('GET', '/v1/connect/intentions')).body).toEqual([]);
    expect((await call('GET', '/v1/config/service-intentions/api')).status).toBe(404);
  });

  it('refuses a bad service-intentions entry naming each field path, and changes nothing', async () => {
    const { call } = await setup();
    const r = await call('PUT', '/v1/config', {
      Kind: 'service-intentions',
      Name: '*',
      Sources: [{ Name: 'web' }, { Name: 'db', Action: 'allow', Permissions: [{ Action: 'allow' }] }, { Name: 'web', Action: 'permit' }],
    });
    expect(r.status).toBe(400);
    // A field's own check first; the checks across fields once every field is well formed.
    expect(r.body.Violations.map((v: { Field: string }) => v.Field)).toEqual(['Sources[2].Action']);
    const across = await call('PUT', '/v1/config', {
      Kind: 'service-intentions',
      Name: '*',
      Sources: [{ Name: 'web' }, { Name: 'db', Action: 'allow', Permissions: [{ Action: 'allow' }] }, { Name: 'web', Action: 'deny' }],
    });
    expect(across.body.Violations.map((v: { Field: string }) => v.Field)).toEqual([
      'Sources[0].Action',
      'Sources[1].Action',
      'Sources[1].Permissions',
      'Sources[2].Name',
    ]);
    expect((await call('PUT', '/v1/config', { Kind: 'service-intentions', Name: 'api', Sources: [] })).body.Violations[0].Field).toBe('Sources');
    expect((await call('GET', '/v1/connect/intentions')).body).toEqual([]);
  });

  it('refuses L7 permissions for a tcp destination, and the protocol change that would make one tcp (issue 21)', async () => {
    const { call } = await setup();
    const l7 = { Kind: 'service-intentions', Name: 'api', Sources: [{ Name: 'web', Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/v1/' } }] }] };
    const refused = await call('PUT', '/v1/config', l7);
    expect(refused.status).toBe(400);
    expect(refused.body.Violations).toEqual([
      {
        Field: 'Sources[0].Permissions',
        Message:
          'destination "api" speaks tcp (from default); L7 permissions need http, http2 or grpc: set it with a service-defaults entry (Protocol = "http")',
      },
    ]);
    expect((await call('GET', '/v1/connect/intentions')).body).toEqual([]);
    const exact = await call('PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Permissions: l7.Sources[0].Permissions });
    expect([exact.status, exact.body.Violations?.[0]?.Field]).toEqual([400, 'Permissions']);

    // proxy-defaults makes every service http; then a service-defaults tcp for api is refused.
    expect((await call('PUT', '/v1/config', { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } })).body).toBe(true);
    expect((await call('PUT', '/v1/config', l7)).body).toBe(true);
    const id = (await call('GET', '/v1/connect/intentions')).body[0].ID;
    const tcp = await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'tcp' });
    expect(tcp.status).toBe(400);
    expect(tcp.body.Violations).toEqual([
      { Field: 'Protocol', Message: expect.stringContaining(`destination "api" would speak tcp (from service-defaults), but intention ${id} has`) },
    ]);
    const pdTcp = await call('PUT', '/v1/config', { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'tcp' } });
    expect([pdTcp.status, pdTcp.body.Violations[0].Field]).toEqual([400, 'Config.protocol']);
    const pdGone = await call('DELETE', '/v1/config/proxy-defaults/global');
    expect([pdGone.status, pdGone.body.Violations[0].Message]).toEqual([400, expect.stringContaining('would speak tcp (from default)')]);
    // With its own http service-defaults, api no longer leans on proxy-defaults.
    expect((await call('PUT', '/v1/config', { Kind: 'service-defaults', Name: 'api', Protocol: 'http' })).body).toBe(true);
    expect((await call('DELETE', '/v1/config/proxy-defaults/global')).status).toBe(200);
    expect((await call('GET', '/v1/config/service-defaults/api')).body.Protocol).toBe('http');
  });
});

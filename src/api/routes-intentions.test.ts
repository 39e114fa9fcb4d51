import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { Intentions } from '../intentions/index.js';
import { denyAll } from '../acl/index.js';
import { testApp } from './testing/test-app.js';
import { registerIntentionRoutes } from './routes-intentions.js';

const actor = { accessorId: 'acc-1', description: 'tester', dc: 'dc1' };
const TD = 'td.isthmus';
const uri = (svc: string, ns = 'default') => `spiffe://${TD}/ns/${ns}/dc/dc1/svc/${svc}`;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(defaultAllow = false) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const intentions = new Intentions({ store, dc: 'dc1', defaultAllow: () => defaultAllow, trustDomain: () => TD });
  await intentions.start();
  cleanups.push(
    () => intentions.stop(),
    () => store.stop(),
  );
  return { store, intentions };
}

describe('intention routes', () => {
  it('serves Consul shapes and errors', async () => {
    const { store, intentions } = await setup();
    const app = testApp((a) => registerIntentionRoutes(a, { store, intentions }));
    const put = await app.request('/v1/connect/intentions/exact?source=web&destination=db', {
      method: 'PUT',
      body: JSON.stringify({ Action: 'deny', Description: 'no' }),
    });
    expect(await put.json()).toBe(true);
    const got: any = await (await app.request('/v1/connect/intentions/exact?source=web&destination=db')).json();
    expect(got).toMatchObject({
      SourceName: 'web',
      DestinationName: 'db',
      SourceNS: 'default',
      Action: 'deny',
      Precedence: 9,
      SourceType: 'consul',
      Description: 'no',
    });
    const match: any = await (await app.request('/v1/connect/intentions/match?by=destination&name=db')).json();
    expect(match.db.map((i: { ID: string }) => i.ID)).toEqual([got.ID]);
    expect(await (await app.request('/v1/connect/intentions/check?source=web&destination=db')).json()).toEqual({ Allowed: false });
    const dup = await app.request('/v1/connect/intentions', {
      method: 'POST',
      body: JSON.stringify({ SourceName: 'web', DestinationName: 'db', Action: 'allow' }),
    });
    expect(dup.status).toBe(409);
    const bad = await app.request('/v1/connect/intentions/exact?source=web', { method: 'PUT', body: '{}' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as any).Violations[0].Field).toBe('destination');
    expect((await app.request('/v1/connect/intentions/00000000-0000-0000-0000-000000000000')).status).toBe(404);
    const auth = await (
      await app.request('/v1/agent/connect/authorize', { method: 'POST', body: JSON.stringify({ Target: 'db', ClientCertURI: uri('web') }) })
    ).json();
    expect(auth).toMatchObject({ Authorized: false, Reason: expect.stringContaining('web => db') });
  });

  it('refuses writes and hides reads without the permission', async () => {
    const { store, intentions } = await setup();
    await intentions.upsertExact('web', 'db', { Action: 'deny' }, actor);
    const app = testApp((a) => registerIntentionRoutes(a, { store, intentions }), { authz: denyAll });
    expect((await app.request('/v1/connect/intentions/exact?source=web&destination=db', { method: 'PUT', body: '{"Action":"allow"}' })).status).toBe(403);
    expect(await (await app.request('/v1/connect/intentions')).json()).toEqual([]);
    expect(intentions.getExact('web', 'db').Action).toBe('deny');
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { AUDIT_TABLE } from '../core/audit.js';
import { Intentions } from './intentions.js';
import { precedence } from './model.js';

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
  cleanups.push(() => intentions.stop(), () => store.stop());
  return { store, intentions };
}

describe('precedence', () => {
  it('follows Consul\'s table from 9 (exact/exact) down to 1 (*/* -> */*)', () => {
    const p = (sNS: string, s: string, dNS: string, d: string) => precedence({ SourceNS: sNS, SourceName: s, DestinationNS: dNS, DestinationName: d });
    expect([
      p('a', 'a', 'b', 'b'), p('a', '*', 'b', 'b'), p('*', '*', 'b', 'b'),
      p('a', 'a', 'b', '*'), p('a', '*', 'b', '*'), p('*', '*', 'b', '*'),
      p('a', 'a', '*', '*'), p('a', '*', '*', '*'), p('*', '*', '*', '*'),
    ]).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1]);
  });
});

describe('Intentions', () => {
  it('lets the more exact intention win and deny win a tie of precedence', async () => {
    const { intentions } = await setup();
    await intentions.upsertExact('*', 'db', { Action: 'deny' }, actor);
    await intentions.upsertExact('web', 'db', { Action: 'allow' }, actor);
    await intentions.upsertExact('web', '*', { Action: 'deny' }, actor);
    expect(intentions.authorize(uri('web'), { name: 'db' }).allowed).toBe(true);
    expect(intentions.authorize(uri('api'), { name: 'db' }).allowed).toBe(false);
    expect(intentions.authorize(uri('web'), { name: 'cache' }).allowed).toBe(false);
    // Same precedence (ns wildcard source in two namespaces does not apply here): two * sources on one destination.
    await intentions.upsertExact('other/*', 'api', { Action: 'allow' }, actor);
    await intentions.upsertExact('*', 'api', { Action: 'allow' }, actor);
    expect(intentions.authorize(uri('x', 'other'), { name: 'api' }).decidedBy).toBe(intentions.getExact('other/*', 'api').ID);
  });

  it('names the deciding intention or "default", with the store index it decided at', async () => {
    const { intentions, store } = await setup(true);
    const none = intentions.authorize(uri('a'), { name: 'b' });
    expect(none).toMatchObject({ allowed: true, decidedBy: 'default' });
    await intentions.upsertExact('a', 'b', { Action: 'deny' }, actor);
    const d = intentions.authorize(uri('a'), { name: 'b' });
    expect(d.allowed).toBe(false);
    expect(d.decidedBy).toBe(intentions.getExact('a', 'b').ID);
    expect(d.index).toBe(store.tableIndex('intentions'));
  });

  it('refuses a caller from another trust domain or with a malformed SPIFFE ID', async () => {
    const { intentions } = await setup(true);
    expect(intentions.authorize('spiffe://evil.isthmus/ns/default/dc/dc1/svc/web', { name: 'db' })).toMatchObject({ allowed: false });
    expect(intentions.authorize('spiffe://td.isthmus/svc/web', { name: 'db' }).allowed).toBe(false);
  });

  it('evaluates L7 permissions top to bottom and treats them as deny at L4', async () => {
    const { intentions } = await setup(true);
    await intentions.upsertExact('web', 'api', {
      Permissions: [
        { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
        { Action: 'allow', HTTP: { PathPrefix: '/', Methods: ['GET'] } },
        { Action: 'deny', HTTP: { PathPrefix: '/' } },
      ],
    }, actor);
    const req = (method: string, path: string) => intentions.authorize(uri('web'), { name: 'api' }, { method, path, headers: {} });
    expect(req('GET', '/admin/x').allowed).toBe(false);
    expect(req('GET', '/orders?id=1').allowed).toBe(true);
    expect(req('POST', '/orders').allowed).toBe(false);
    expect(intentions.authorize(uri('web'), { name: 'api' })).toMatchObject({ allowed: false, l7: true });
    expect(intentions.check('web', 'api').allowed).toBe(false);
  });

  it('matches headers with Present, Exact, Regex and Invert', async () => {
    const { intentions } = await setup(false);
    await intentions.upsertExact('web', 'api', { Permissions: [{ Action: 'allow', HTTP: { Header: [{ Name: 'x-env', Exact: 'prod' }, { Name: 'x-debug', Present: true, Invert: true }] } }] }, actor);
    const h = (headers: Record<string, string>) => intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path: '/', headers }).allowed;
    expect(h({ 'x-env': 'prod' })).toBe(true);
    expect(h({ 'x-env': 'prod', 'x-debug': '1' })).toBe(false);
    expect(h({ 'x-env': 'dev' })).toBe(false);
  });

  it('refuses invalid intentions naming every field, and writes nothing', async () => {
    const { intentions, store } = await setup();
    const before = store.index();
    await expect(intentions.upsertExact('web', '*', { Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }, actor)).rejects.toMatchObject({
      code: 'ISTHMUS_ERR_INVALID',
      violations: [{ Field: 'Permissions', Message: expect.stringContaining('wildcard') }],
    });
    await expect(intentions.upsertExact('web', 'db', { Action: 'allow', Permissions: [{ Action: 'deny' }] }, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    await expect(intentions.upsertExact('we/b/x', 'db', { Action: 'allow' }, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    expect(store.index()).toBe(before);
  });

  it('writes an audit event in the same commit as each change', async () => {
    const { intentions, store } = await setup();
    await intentions.upsertExact('web', 'db', { Action: 'allow' }, actor);
    await intentions.upsertExact('web', 'db', { Action: 'deny' }, actor);
    await intentions.deleteExact('web', 'db', actor);
    const events = store.list<{ Action: string; Subject: string; Actor: { AccessorID: string } }>(AUDIT_TABLE).sort((a, b) => a.modifyIndex - b.modifyIndex);
    expect(events.map((e) => e.value.Action)).toEqual(['create', 'update', 'delete']);
    expect(events.every((e) => e.value.Subject === 'web => db' && e.value.Actor.AccessorID === 'acc-1')).toBe(true);
    // Each event shares its index with the change it records.
    expect(new Set(events.map((e) => e.modifyIndex)).size).toBe(3);
    expect(events.at(-1)!.modifyIndex).toBe(store.tableIndex('intentions'));
  });
});

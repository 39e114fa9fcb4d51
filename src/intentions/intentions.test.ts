import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { AuditLog } from '../core/audit.js';
import { Intentions } from './intentions.js';
import { intentionBody, precedence, type Intention } from './model.js';
import { INTENTIONS_TABLE } from './intentions.js';
import { serviceIntentionsSchema } from './service-intentions.js';

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

describe('precedence', () => {
  it("follows Consul's table from 9 (exact/exact) down to 1 (*/* -> */*)", () => {
    const p = (sNS: string, s: string, dNS: string, d: string) => precedence({ SourceNS: sNS, SourceName: s, DestinationNS: dNS, DestinationName: d });
    expect([
      p('a', 'a', 'b', 'b'),
      p('a', '*', 'b', 'b'),
      p('*', '*', 'b', 'b'),
      p('a', 'a', 'b', '*'),
      p('a', '*', 'b', '*'),
      p('*', '*', 'b', '*'),
      p('a', 'a', '*', '*'),
      p('a', '*', '*', '*'),
      p('*', '*', '*', '*'),
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
    await intentions.upsertExact(
      'web',
      'api',
      {
        Permissions: [
          { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
          { Action: 'allow', HTTP: { PathPrefix: '/', Methods: ['GET'] } },
          { Action: 'deny', HTTP: { PathPrefix: '/' } },
        ],
      },
      actor,
    );
    const req = (method: string, path: string) => intentions.authorize(uri('web'), { name: 'api' }, { method, path, headers: {} });
    expect(req('GET', '/admin/x').allowed).toBe(false);
    expect(req('GET', '/orders?id=1').allowed).toBe(true);
    expect(req('POST', '/orders').allowed).toBe(false);
    expect(intentions.authorize(uri('web'), { name: 'api' })).toMatchObject({ allowed: false, l7: true });
    expect(intentions.check('web', 'api').allowed).toBe(false);
  });

  it('matches headers with Present, Exact, Regex and Invert', async () => {
    const { intentions } = await setup(false);
    await intentions.upsertExact(
      'web',
      'api',
      {
        Permissions: [
          {
            Action: 'allow',
            HTTP: {
              Header: [
                { Name: 'x-env', Exact: 'prod' },
                { Name: 'x-debug', Present: true, Invert: true },
              ],
            },
          },
        ],
      },
      actor,
    );
    const h = (headers: Record<string, string>) => intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path: '/', headers }).allowed;
    expect(h({ 'x-env': 'prod' })).toBe(true);
    expect(h({ 'x-env': 'prod', 'x-debug': '1' })).toBe(false);
    expect(h({ 'x-env': 'dev' })).toBe(false);
  });

  it('matches PathRegex and header Regex in RE2 syntax against the whole value, as Consul (Envoy) does', async () => {
    const { intentions } = await setup(false);
    await intentions.upsertExact(
      'web',
      'api',
      {
        Permissions: [
          { Action: 'allow', HTTP: { PathRegex: '(?i)/api/v[0-9]+/users/[^/]+' } },
          { Action: 'allow', HTTP: { PathPrefix: '/h', Header: [{ Name: 'x-version', Regex: 'v[0-9]+' }] } },
        ],
      },
      actor,
    );
    const req = (path: string, headers: Record<string, string> = {}) =>
      intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path, headers }).allowed;
    expect(req('/api/v2/users/bob')).toBe(true);
    expect(req('/API/V2/users/bob')).toBe(true); // RE2's (?i), which JavaScript's RegExp refuses
    expect(req('/api/v2/users/bob/orders')).toBe(false); // the whole path, not a part of it
    expect(req('/x/api/v2/users/bob')).toBe(false);
    expect(req('/h', { 'x-version': 'v12' })).toBe(true);
    expect(req('/h', { 'x-version': 'xv12y' })).toBe(false);
  });

  it('decides in linear time on patterns a backtracking engine never finishes', async () => {
    const { intentions } = await setup(true);
    await intentions.upsertExact(
      'web',
      'api',
      {
        Permissions: [
          { Action: 'deny', HTTP: { PathRegex: '/(a+)+b' } },
          { Action: 'deny', HTTP: { PathRegex: '.*.*.*x' } },
          { Action: 'allow', HTTP: { PathPrefix: '/' } },
        ],
      },
      actor,
    );
    // JavaScript's RegExp takes 2^40 steps on the first path and about an hour on the second.
    const slow1 = '/' + 'a'.repeat(40) + '!';
    const slow2 = '/' + 'a'.repeat(16_000);
    const req = (path: string) => intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path, headers: {} }).allowed;
    expect(req(slow1)).toBe(true);
    expect(req(slow2)).toBe(true);
    expect(req('/aaab')).toBe(false);
    expect(req(slow2 + 'x')).toBe(false);
  });

  it('refuses a pattern that is not RE2 (lookarounds, backreferences) in a body, naming its field', () => {
    const issues = (body: unknown) => {
      const r = intentionBody.safeParse(body);
      return r.success ? [] : r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    };
    expect(issues({ Permissions: [{ Action: 'allow', HTTP: { PathRegex: '/(?=admin)' } }] })).toEqual([
      { path: 'Permissions.0.HTTP.PathRegex', message: expect.stringMatching(/not a valid RE2 regular expression.*\(\?=/) },
    ]);
    expect(issues({ Permissions: [{ Action: 'allow', HTTP: { Header: [{ Name: 'x', Regex: '(a)\\1' }] } }] })).toEqual([
      { path: 'Permissions.0.HTTP.Header.0.Regex', message: expect.stringContaining('\\1') },
    ]);
    expect(issues({ Permissions: [{ Action: 'allow', HTTP: { PathRegex: '(?i)/api/v[0-9]+' } }] })).toEqual([]);
  });

  it('denies every request a permission with a pattern that is not RE2 reaches (one stored before the check)', async () => {
    const { intentions, store } = await setup(true);
    await intentions.upsertExact('web', 'api', { Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }, actor);
    // As if written by a version that took JavaScript patterns: straight into the store.
    const [{ key, value: stored }] = store.list<Intention>(INTENTIONS_TABLE);
    await store.commit([
      {
        op: 'put',
        table: INTENTIONS_TABLE,
        key,
        value: {
          ...stored,
          Permissions: [
            { Action: 'allow', HTTP: { PathRegex: '/(?!admin).*' } },
            { Action: 'allow', HTTP: { PathPrefix: '/' } },
          ],
        },
      },
    ]);
    // The store tells the intentions of a commit before the commit resolves: the next decision uses it.
    expect(intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path: '/x', headers: {} }).allowed).toBe(false);
    expect(intentions.authorize(uri('web'), { name: 'api' }, { method: 'GET', path: '/admin', headers: {} }).allowed).toBe(false);
    // Other intentions still compile and decide.
    await intentions.upsertExact('batch', 'api', { Action: 'allow' }, actor);
    expect(intentions.authorize(uri('batch'), { name: 'api' }).allowed).toBe(true);
  });

  it('refuses invalid intentions naming every field, and writes nothing', async () => {
    const { intentions, store } = await setup();
    const before = store.index();
    await expect(intentions.upsertExact('web', '*', { Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] }, actor)).rejects.toMatchObject({
      code: 'ISTHMUS_ERR_INVALID',
      violations: [{ Field: 'Permissions', Message: expect.stringContaining('wildcard') }],
    });
    await expect(intentions.upsertExact('web', 'db', { Action: 'allow', Permissions: [{ Action: 'deny' }] }, actor)).rejects.toMatchObject({
      code: 'ISTHMUS_ERR_INVALID',
    });
    await expect(intentions.upsertExact('we/b/x', 'db', { Action: 'allow' }, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_INVALID' });
    expect(store.index()).toBe(before);
  });

  it('writes an audit event in the same commit as each change', async () => {
    const { intentions, store } = await setup();
    await intentions.upsertExact('web', 'db', { Action: 'allow' }, actor);
    await intentions.upsertExact('web', 'db', { Action: 'deny' }, actor);
    await intentions.deleteExact('web', 'db', actor);
    const events = new AuditLog(store).events();
    expect(events.map((e) => e.Action)).toEqual(['create', 'update', 'delete']);
    expect(events.every((e) => e.Subject === 'web => db' && e.Actor.AccessorID === 'acc-1')).toBe(true);
    // Each event shares its index with the change it records.
    expect(new Set(events.map((e) => e.Index)).size).toBe(3);
    expect(events.at(-1)!.Index).toBe(intentions.index());
  });

  it('wakes a wait and calls onChange on a change of the intentions only', async () => {
    const { intentions, store } = await setup();
    let changes = 0;
    const off = intentions.onChange(() => void changes++);
    let woke = false;
    const waiting = intentions.waitForChange(intentions.index(), 5000).then((i) => ((woke = true), i));
    await store.commit([{ op: 'put', table: 'elsewhere', key: 'k', value: 1 }]);
    await new Promise((r) => setTimeout(r, 20));
    expect([woke, changes]).toEqual([false, 0]);
    const i = await intentions.upsertExact('web', 'db', { Action: 'allow' }, actor);
    expect(await waiting).toBe(i.ModifyIndex);
    expect(changes).toBe(1);
    off();
    await intentions.deleteExact('web', 'db', actor);
    expect(changes).toBe(1);
  });

  it('refuses L7 permissions for a destination that does not speak an L7 protocol, on every write path (issue 21)', async () => {
    const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
    await store.start();
    cleanups.push(() => store.stop());
    const protocols: Record<string, { protocol: string; from: string }> = { api: { protocol: 'tcp', from: 'proxy-defaults' } };
    const intentions = new Intentions({
      store,
      dc: 'dc1',
      defaultAllow: () => false,
      trustDomain: () => TD,
      protocolOf: ({ name }) => protocols[name] ?? { protocol: 'tcp', from: 'default' },
    });
    const perms = [{ Action: 'allow' as const, HTTP: { PathPrefix: '/' } }];
    const refusal = async (p: Promise<unknown>) => {
      const err = await p.then(
        () => undefined,
        (e) => e,
      );
      expect(err?.code).toBe('ISTHMUS_ERR_INVALID');
      return err.violations;
    };
    expect(await refusal(intentions.upsertExact('web', 'api', { Permissions: perms }, actor))).toEqual([
      {
        Field: 'Permissions',
        Message:
          'destination "api" speaks tcp (from proxy-defaults); L7 permissions need http, http2 or grpc: set it with a service-defaults entry (Protocol = "http")',
      },
    ]);
    expect((await refusal(intentions.create({ SourceName: 'web', DestinationName: 'db', Permissions: perms }, actor)))[0].Message).toContain(
      'destination "db" speaks tcp (from default)',
    );
    const l4 = await intentions.upsertExact('web', 'api', { Action: 'allow' }, actor);
    expect((await refusal(intentions.updateById(l4.ID, { Permissions: perms }, actor)))[0].Field).toBe('Permissions');
    // A wildcard destination is refused on its own grounds, as in Consul.
    expect((await refusal(intentions.upsertExact('web', '*', { Permissions: perms }, actor)))[0].Message).toBe(
      'L7 permissions are not allowed on a wildcard destination',
    );
    expect(intentions.list().map((i) => [i.SourceName, i.DestinationName, i.Action])).toEqual([['web', 'api', 'allow']]);
    for (const protocol of ['http', 'http2', 'grpc']) {
      protocols.api = { protocol, from: 'service-defaults' };
      await intentions.upsertExact('web', 'api', { Permissions: perms }, actor);
    }
    expect(intentions.getExact('web', 'api')).toMatchObject({ ID: l4.ID, Permissions: perms });
  });

  it('writes a service-intentions entry as one commit of intentions, audited one by one, with check-and-set', async () => {
    const { store, intentions } = await setup();
    const kept = await intentions.upsertExact('web', 'api', { Action: 'allow' }, actor);
    await intentions.upsertExact('old', 'api', { Action: 'allow' }, actor);
    await intentions.upsertExact('web', 'db', { Action: 'allow' }, actor);
    const at = intentions.entry('api')!.ModifyIndex;
    const before = store.index();
    const entry = serviceIntentionsSchema.parse({
      Kind: 'service-intentions',
      Name: 'api',
      Sources: [
        { Name: 'web', Action: 'deny', LegacyMeta: { ticket: 'T-1' } },
        { Name: 'batch', Action: 'allow' },
      ],
    });
    expect(await intentions.putEntry(entry, { cas: at - 1 }, actor)).toBe(false);
    expect(await intentions.putEntry(entry, { cas: 0 }, actor)).toBe(false);
    expect(store.index()).toBe(before);
    expect(await intentions.putEntry(entry, { cas: at }, actor)).toBe(true);
    expect(store.index()).toBe(before + 1);
    const api = intentions
      .list()
      .filter((i) => i.DestinationName === 'api')
      .map((i) => [i.SourceName, i.Action, i.Meta]);
    expect(api.sort()).toEqual([
      ['batch', 'allow', {}],
      ['web', 'deny', { ticket: 'T-1' }],
    ]);
    expect(intentions.getExact('web', 'api').ID).toBe(kept.ID);
    expect(intentions.getExact('web', 'db').Action).toBe('allow');
    const events = new AuditLog(store).events({ kind: 'intention' }).filter((e) => (e.Index ?? 0) > before);
    expect(events.map((e) => [e.Action, e.Subject]).sort()).toEqual([
      ['create', 'batch => api'],
      ['delete', 'old => api'],
      ['update', 'web => api'],
    ]);
    expect(await intentions.deleteEntry('api', { cas: 0 }, actor)).toBe(false);
    expect(await intentions.deleteEntry('api', {}, actor)).toBe(true);
    expect(intentions.entry('api')).toBeUndefined();
    expect(intentions.entries().map((e) => e.Name)).toEqual(['db']);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { MemoryStore } from '../store/index.js';
import { AuditLog } from '../core/audit.js';
import { CONFIG_ENTRIES_TABLE, ConfigEntries } from './config-entries.js';
import { parseConfigEntry } from './model.js';

const actor = { accessorId: 'acc-1', description: 'tester', dc: 'dc1' };
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(primary = true) {
  const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
  await store.start();
  const entries = new ConfigEntries({ store, dc: 'dc1', primary });
  await entries.start();
  cleanups.push(
    () => entries.stop(),
    () => store.stop(),
  );
  return { store, entries };
}

const sd = (name: string, protocol?: string) => parseConfigEntry({ Kind: 'service-defaults', Name: name, ...(protocol ? { Protocol: protocol } : {}) });
const router = (name: string) =>
  parseConfigEntry({ Kind: 'service-router', Name: name, Routes: [{ Match: { HTTP: { PathPrefix: '/a' } }, Destination: { PrefixRewrite: '/' } }] });
const splitter = (name: string) => parseConfigEntry({ Kind: 'service-splitter', Name: name, Splits: [{ Weight: 100 }] });

async function refusedWith(p: Promise<unknown>) {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err?.code).toBe('ISTHMUS_ERR_INVALID');
  return err.violations as { Field: string; Message: string }[];
}

describe('ConfigEntries', () => {
  it('stores, reads back with indexes, lists one kind sorted by name, deletes, and audits each change', async () => {
    const { store, entries } = await setup();
    expect(await entries.put(sd('web', 'http'), {}, actor)).toBe(true);
    expect(await entries.put(sd('api'), {}, actor)).toBe(true);
    await entries.put(router('web'), {}, actor);
    const web = entries.get('service-defaults', 'web')!;
    expect(web).toMatchObject({ Kind: 'service-defaults', Name: 'web', Protocol: 'http' });
    expect(web.CreateIndex).toBeGreaterThan(0);
    expect(web.ModifyIndex).toBe(web.CreateIndex);
    expect(entries.list('service-defaults').map((e) => e.Name)).toEqual(['api', 'web']);
    expect(entries.list('service-router').map((e) => e.Name)).toEqual(['web']);
    expect(entries.list('service-resolver')).toEqual([]);
    await entries.put(sd('web', 'http2'), {}, actor);
    const updated = entries.get('service-defaults', 'web')!;
    expect([updated.CreateIndex, updated.ModifyIndex > web.ModifyIndex, updated.Protocol]).toEqual([web.CreateIndex, true, 'http2']);
    expect(await entries.delete('service-defaults', 'api', {}, actor)).toBe(true);
    expect(entries.get('service-defaults', 'api')).toBeUndefined();
    // Deleting what is not there is not an error (Consul's).
    expect(await entries.delete('service-defaults', 'api', {}, actor)).toBe(true);
    const audit = new AuditLog(store).events({ kind: 'config-entry' });
    expect(audit.map((e) => `${e.Action} ${e.Subject}`)).toEqual([
      'create service-defaults/web',
      'create service-defaults/api',
      'create service-router/web',
      'update service-defaults/web',
      'delete service-defaults/api',
    ]);
    expect(audit[3].Before).toMatchObject({ Protocol: 'http' });
    expect(audit[3].After).toMatchObject({ Protocol: 'http2' });
  });

  it("check-and-set as Consul's ?cas=: 0 only if absent, N only at ModifyIndex N, false (not an error) otherwise", async () => {
    const { entries } = await setup();
    expect(await entries.put(sd('web', 'http'), { cas: 0 }, actor)).toBe(true);
    expect(await entries.put(sd('web', 'grpc'), { cas: 0 }, actor)).toBe(false);
    const at = entries.get('service-defaults', 'web')!.ModifyIndex;
    expect(await entries.put(sd('web', 'grpc'), { cas: at + 1 }, actor)).toBe(false);
    expect(entries.get('service-defaults', 'web')!.Protocol).toBe('http');
    expect(await entries.put(sd('web', 'grpc'), { cas: at }, actor)).toBe(true);
    const now = entries.get('service-defaults', 'web')!.ModifyIndex;
    // The old index no longer matches.
    expect(await entries.put(sd('web', 'http'), { cas: at }, actor)).toBe(false);
    expect(await entries.delete('service-defaults', 'web', { cas: at }, actor)).toBe(false);
    expect(await entries.delete('service-defaults', 'web', { cas: 0 }, actor)).toBe(false);
    expect(entries.get('service-defaults', 'web')).toBeDefined();
    expect(await entries.delete('service-defaults', 'web', { cas: now }, actor)).toBe(true);
    expect(entries.get('service-defaults', 'web')).toBeUndefined();
    expect(await entries.delete('service-defaults', 'web', { cas: now }, actor)).toBe(false);
  });

  it('refuses a router or splitter in front of a tcp service, naming the protocol as Consul does', async () => {
    const { entries } = await setup();
    const v = await refusedWith(entries.put(router('web'), {}, actor));
    expect(v).toEqual([{ Field: 'Name', Message: 'discovery chain "web" uses a protocol "tcp" that does not permit advanced routing or splitting behavior' }]);
    await entries.put(sd('web', 'tcp'), {}, actor);
    await refusedWith(entries.put(splitter('web'), {}, actor));
    expect(entries.list('service-router')).toEqual([]);
    expect(entries.list('service-splitter')).toEqual([]);
    // http through proxy-defaults counts, when the service has no protocol of its own.
    await entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } }), {}, actor);
    expect(await entries.put(router('api'), {}, actor)).toBe(true);
    // ...but web's own service-defaults says tcp, and wins.
    await refusedWith(entries.put(router('web'), {}, actor));
  });

  it('refuses a protocol change to tcp (or a delete falling back to tcp) while a router or splitter for the service exists', async () => {
    const { entries } = await setup();
    await entries.put(sd('web', 'http'), {}, actor);
    await entries.put(router('web'), {}, actor);
    await entries.put(sd('api', 'grpc'), {}, actor);
    await entries.put(splitter('api'), {}, actor);
    expect(await refusedWith(entries.put(sd('web', 'tcp'), {}, actor))).toEqual([
      { Field: 'Protocol', Message: 'discovery chain "web" uses a protocol "tcp" that does not permit advanced routing or splitting behavior' },
    ]);
    expect((await refusedWith(entries.put(sd('api'), {}, actor)))[0].Message).toMatch(/"api" uses a protocol "tcp"/);
    expect((await refusedWith(entries.delete('service-defaults', 'web', {}, actor)))[0].Field).toBe('Name');
    expect(entries.get('service-defaults', 'web')!.Protocol).toBe('http');
    // Through proxy-defaults: api relies on it once its own protocol goes, so tcp there is refused.
    await entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'grpc' } }), {}, actor);
    await entries.delete('service-defaults', 'api', {}, actor);
    const v = await refusedWith(entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'tcp' } }), {}, actor));
    expect(v.map((x) => x.Field)).toEqual(['Config.protocol']);
    // With the router gone, the protocol may change.
    await entries.delete('service-router', 'web', {}, actor);
    expect(await entries.put(sd('web', 'tcp'), {}, actor)).toBe(true);
  });

  it('refuses writes in a secondary (they are forwarded to the primary) and changes nothing', async () => {
    const { store, entries } = await setup(false);
    const before = store.index();
    await expect(entries.put(sd('web', 'http'), {}, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_PRIMARY_UNREACHABLE' });
    await expect(entries.delete('service-defaults', 'web', {}, actor)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_PRIMARY_UNREACHABLE' });
    expect(store.index()).toBe(before);
  });

  it('offers index, waitForChange and onChange over its table only', async () => {
    const { store, entries } = await setup();
    let calls = 0;
    const off = entries.onChange(() => calls++);
    const start = entries.index();
    const waiting = entries.waitForChange(start, 5000);
    await store.commit([{ op: 'put', table: 'elsewhere', key: 'k', value: 1 }]);
    expect(calls).toBe(0);
    await entries.put(sd('web', 'http'), {}, actor);
    const idx = await waiting;
    expect(idx).toBe(entries.index());
    expect(idx).toBeGreaterThan(start);
    expect(calls).toBe(1);
    off();
    expect(await entries.waitForChange(entries.index(), 20)).toBe(entries.index());
  });

  it('refuses a protocol change that leaves L7 intentions on tcp, naming them, and falls back as told (issue 21)', async () => {
    const store = new MemoryStore({ dc: 'dc1', advertiseAddr: 'x' });
    await store.start();
    cleanups.push(() => store.stop());
    let sidecars = { protocol: 'tcp', from: 'default' };
    const entries = new ConfigEntries({
      store,
      dc: 'dc1',
      l7Intentions: () => [
        { destination: 'api', id: 'id-2' },
        { destination: 'api', id: 'id-1' },
        { destination: 'db', id: 'id-3' },
      ],
      fallbackProtocol: () => sidecars,
    });
    await entries.put(sd('api', 'http'), {}, actor);
    // db's protocol is not api's business: only api is checked for api's entry.
    const v = await refusedWith(entries.put(sd('api', 'tcp'), {}, actor));
    expect(v).toEqual([
      {
        Field: 'Protocol',
        Message:
          'destination "api" would speak tcp (from service-defaults), but intentions id-1, id-2 have L7 permissions, which need http, http2 or grpc: remove their Permissions first, or keep an L7 protocol',
      },
    ]);
    expect(entries.get('service-defaults', 'api')?.Protocol).toBe('http');
    expect((await refusedWith(entries.delete('service-defaults', 'api', {}, actor)))[0].Message).toContain('would speak tcp (from default)');
    // Its sidecars say http: the entry can go, api still speaks http.
    sidecars = { protocol: 'http', from: 'its sidecar registrations' };
    expect(await entries.delete('service-defaults', 'api', {}, actor)).toBe(true);
    // db was already on tcp (its sidecars'): an unrelated proxy-defaults write is not refused for it, one that sets tcp is.
    sidecars = { protocol: 'tcp', from: 'its sidecar registrations' };
    await entries.put(sd('api', 'grpc'), {}, actor);
    expect(await entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', MeshGateway: { Mode: 'local' } }), {}, actor)).toBe(true);
    const pd = await refusedWith(entries.put(parseConfigEntry({ Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'tcp' } }), {}, actor));
    expect(pd.map((x) => [x.Field, x.Message])).toEqual([
      ['Config.protocol', expect.stringMatching(/^destination "db" would speak tcp \(from proxy-defaults\), but intention id-3 has L7 permissions/)],
    ]);
  });

  it('never stores a service-intentions entry in its own table', async () => {
    const { entries } = await setup();
    const e = parseConfigEntry({ Kind: 'service-intentions', Name: 'api', Sources: [{ Name: 'web', Action: 'allow' }] });
    expect((await refusedWith(entries.put(e, {}, actor)))[0].Field).toBe('Kind');
    expect(entries.list('service-intentions')).toEqual([]);
  });
});

// Consul compiles every chain a write reaches (agent/consul/config_endpoint.go) and refuses one that does not compile.
describe('ConfigEntries: discovery chains checked at write', () => {
  const put = (entries: ConfigEntries, raw: Record<string, unknown>) => entries.put(parseConfigEntry(raw), {}, actor);
  const resolver = (name: string, more: Record<string, unknown>) => ({ Kind: 'service-resolver', Name: name, ...more });
  const subsets = (...names: string[]) => Object.fromEntries(names.map((n) => [n, { Filter: `Service.Meta.version == ${n}` }]));

  /** Refused, and the store is as it was: same index, nothing new to read back. */
  async function refusedUnchanged(store: MemoryStore, p: Promise<unknown>) {
    const before = store.index();
    const v = await refusedWith(p);
    expect(store.index()).toBe(before);
    return v;
  }

  it('accepts a redirect chain of three, and refuses the redirect that closes it into a loop, naming the field and the loop', async () => {
    const { store, entries } = await setup();
    await put(entries, resolver('a', { Redirect: { Service: 'b' } }));
    await put(entries, resolver('b', { Redirect: { Service: 'c' } }));
    expect(await put(entries, resolver('c', { ConnectTimeout: '2s' }))).toBe(true);
    const v = await refusedUnchanged(store, put(entries, resolver('c', { Redirect: { Service: 'a' } })));
    expect(v).toEqual([
      { Field: 'Redirect.Service', Message: 'detected circular resolver redirect: [a.default.dc1 -> b.default.dc1 -> c.default.dc1 -> a.default.dc1]' },
    ]);
    expect(entries.get('service-resolver', 'c')).toMatchObject({ ConnectTimeout: '2s' });
    expect(entries.get('service-resolver', 'c')?.Redirect).toBeUndefined();
  });

  it('refuses a splitter that splits back to itself through another splitter', async () => {
    const { store, entries } = await setup();
    await put(entries, { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    await put(entries, { Kind: 'service-splitter', Name: 'b', Splits: [{ Weight: 100, Service: 'a' }] });
    const v = await refusedUnchanged(store, put(entries, { Kind: 'service-splitter', Name: 'a', Splits: [{ Weight: 50 }, { Weight: 50, Service: 'b' }] }));
    // Seen from b's chain, the loop closes at the split this write adds.
    expect(v).toEqual([{ Field: 'Splits[1].Service', Message: 'detected circular reference: [b -> a -> b]' }]);
    expect(entries.get('service-splitter', 'a')).toBeUndefined();
  });

  it("refuses a split, a route and a failover to a subset the target's resolver does not define, each at its field", async () => {
    const { store, entries } = await setup();
    await put(entries, { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    await put(entries, resolver('api', { Subsets: subsets('v1') }));
    const split = {
      Kind: 'service-splitter',
      Name: 'web',
      Splits: [
        { Weight: 50, Service: 'api', ServiceSubset: 'v1' },
        { Weight: 50, Service: 'api', ServiceSubset: 'v2' },
      ],
    };
    expect(await refusedUnchanged(store, put(entries, split))).toEqual([
      { Field: 'Splits[1].ServiceSubset', Message: 'service "api" does not have a subset named "v2"' },
    ]);
    const route = {
      Kind: 'service-router',
      Name: 'web',
      Routes: [{ Match: { HTTP: { PathPrefix: '/v2' } }, Destination: { Service: 'api', ServiceSubset: 'v2' } }],
    };
    expect(await refusedUnchanged(store, put(entries, route))).toEqual([
      { Field: 'Routes[0].Destination.ServiceSubset', Message: 'service "api" does not have a subset named "v2"' },
    ]);
    const failover = resolver('web', { Failover: { '*': { Targets: [{ Service: 'api', ServiceSubset: 'v2' }] } } });
    expect(await refusedUnchanged(store, put(entries, failover))).toEqual([
      { Field: 'Failover.*.Targets[0].ServiceSubset', Message: 'service "api" does not have a subset named "v2"' },
    ]);
    expect([entries.list('service-splitter'), entries.list('service-router'), entries.get('service-resolver', 'web')]).toEqual([[], [], undefined]);
    // A DefaultSubset outside Subsets never gets this far: the entry's own schema refuses it.
    expect(() => parseConfigEntry(resolver('api', { DefaultSubset: 'v3', Subsets: subsets('v1') }))).toThrow(
      expect.objectContaining({ violations: [expect.objectContaining({ Field: 'DefaultSubset' })] }),
    );
  });

  it('accepts a failover to a subset that exists, and a split and route to it', async () => {
    const { entries } = await setup();
    await put(entries, { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    await put(entries, resolver('api', { Subsets: subsets('v1', 'v2') }));
    expect(await put(entries, resolver('web', { Failover: { '*': { Targets: [{ Service: 'api', ServiceSubset: 'v2' }, { Datacenter: 'dc2' }] } } }))).toBe(
      true,
    );
    expect(
      await put(entries, {
        Kind: 'service-splitter',
        Name: 'web',
        Splits: [
          { Weight: 90, Service: 'api', ServiceSubset: 'v1' },
          { Weight: 10, Service: 'api', ServiceSubset: 'v2' },
        ],
      }),
    ).toBe(true);
    expect(
      await put(entries, {
        Kind: 'service-router',
        Name: 'web',
        Routes: [{ Match: { HTTP: { PathPrefix: '/v2' } }, Destination: { Service: 'api', ServiceSubset: 'v2' } }],
      }),
    ).toBe(true);
  });

  it('refuses deleting a resolver, or rewriting it without a subset, while another entry still asks for that subset, naming that entry', async () => {
    const { store, entries } = await setup();
    await put(entries, { Kind: 'proxy-defaults', Name: 'global', Config: { protocol: 'http' } });
    await put(entries, resolver('api', { Subsets: subsets('v1', 'v2') }));
    await put(entries, {
      Kind: 'service-router',
      Name: 'web',
      Routes: [{ Match: { HTTP: { PathPrefix: '/v2' } }, Destination: { Service: 'api', ServiceSubset: 'v2' } }],
    });
    const v = await refusedUnchanged(store, entries.delete('service-resolver', 'api', {}, actor));
    expect(v).toEqual([{ Field: 'service-router/web.Routes[0].Destination.ServiceSubset', Message: 'service "api" does not have a subset named "v2"' }]);
    expect(Object.keys(entries.get('service-resolver', 'api')!.Subsets!)).toEqual(['v1', 'v2']);
    expect((await refusedUnchanged(store, put(entries, resolver('api', { Subsets: subsets('v1') }))))[0].Field).toBe(
      'service-router/web.Routes[0].Destination.ServiceSubset',
    );
    // Once nothing asks for the subset, the resolver may go.
    await entries.delete('service-router', 'web', {}, actor);
    expect(await entries.delete('service-resolver', 'api', {}, actor)).toBe(true);
  });

  it('refuses a router or splitter sending to a service of another protocol, and a protocol change under one', async () => {
    const { store, entries } = await setup();
    await put(entries, sd('web', 'http'));
    await put(entries, sd('legacy', 'tcp'));
    const v = await refusedUnchanged(store, put(entries, { Kind: 'service-router', Name: 'web', Routes: [{ Destination: { Service: 'legacy' } }] }));
    expect(v).toEqual([
      { Field: 'Routes[0].Destination.Service', Message: 'discovery chain "web" uses inconsistent protocols; service "legacy" has "tcp" which is not "http"' },
    ]);
    expect(
      (await refusedUnchanged(store, put(entries, { Kind: 'service-splitter', Name: 'web', Splits: [{ Weight: 50 }, { Weight: 50, Service: 'legacy' }] })))[0]
        .Field,
    ).toBe('Splits[1].Service');
    await put(entries, sd('admin', 'http'));
    await put(entries, { Kind: 'service-router', Name: 'web', Routes: [{ Destination: { Service: 'admin' } }] });
    // admin's own protocol change breaks web's chain: refused, naming web's route.
    expect(await refusedUnchanged(store, put(entries, sd('admin', 'grpc')))).toEqual([
      {
        Field: 'service-router/web.Routes[0].Destination.Service',
        Message: 'discovery chain "web" uses inconsistent protocols; service "admin" has "grpc" which is not "http"',
      },
    ]);
    expect(entries.get('service-defaults', 'admin')?.Protocol).toBe('http');
  });

  it('does not refuse an unrelated write for a broken chain it found stored, but does refuse rewriting the broken entry as it is', async () => {
    const { store, entries } = await setup();
    // Stored before chains were checked at write.
    const seed = (raw: Record<string, unknown>) => {
      const e = parseConfigEntry(raw);
      return store.commit([{ op: 'put', table: CONFIG_ENTRIES_TABLE, key: `${e.Kind}/${e.Name}`, value: e, ifIndex: 0 }]);
    };
    await seed(resolver('a', { Redirect: { Service: 'b' } }));
    await seed(resolver('b', { Redirect: { Service: 'a' } }));
    expect(await put(entries, sd('a', 'http'))).toBe(true);
    expect(await put(entries, resolver('c', { ConnectTimeout: '1s' }))).toBe(true);
    // A new chain into the loop is refused, naming where the loop closes.
    expect((await refusedUnchanged(store, put(entries, resolver('c', { Redirect: { Service: 'a' } }))))[0]).toEqual({
      Field: 'service-resolver/b.Redirect.Service',
      Message: 'detected circular resolver redirect: [c.default.dc1 -> a.default.dc1 -> b.default.dc1 -> a.default.dc1]',
    });
    expect((await refusedUnchanged(store, put(entries, resolver('b', { Redirect: { Service: 'a' } }))))[0].Field).toBe('Redirect.Service');
    // Breaking the loop is accepted.
    expect(await put(entries, resolver('b', { ConnectTimeout: '3s' }))).toBe(true);
  });
});

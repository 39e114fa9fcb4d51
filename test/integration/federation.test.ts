// Three regions in one process, federated directly (no gateways in between): join with a token,
// replication of intentions and CA roots, forwarding of writes, receipts, exported catalogs,
// primary down and back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRegionConfig } from '../../src/config/index.js';
import { startRegion, type Region } from '../../src/region/index.js';
import { WanLink } from '../harness/wan-link.js';
import { until } from '../harness/until.js';

const HB = 300;

async function region(dc: string, host: string, extra: Record<string, string> = {}, dataDir?: string): Promise<Region> {
  const config = loadRegionConfig({
    mode: 'server',
    flags: {
      dc,
      'http-addr': `${host}:0`,
      'grpc-addr': `${host}:0`,
      'grpc-tls-addr': `${host}:0`,
      'acl-default-policy': 'allow',
      'log-level': 'error',
      ...extra,
    },
    env: {},
  });
  return startRegion({ ...config, dataDir }, { heartbeatMs: HB, processMetrics: false });
}

/** The same token, with the primary reached through `addr` (a WAN link) instead. */
function via(token: string, addr: string): string {
  const t = JSON.parse(Buffer.from(token.slice('isthmus-join.'.length), 'base64url').toString());
  t.servers = [addr];
  t.gateways = [];
  return 'isthmus-join.' + Buffer.from(JSON.stringify(t)).toString('base64url');
}

async function api(r: Region, method: string, path: string, body?: unknown) {
  const res = await fetch(`http://${r.httpAddress}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

async function tokenFor(primary: Region, dc: string): Promise<string> {
  const r = await api(primary, 'POST', '/v1/federation/token', { Datacenter: dc });
  expect(r.status).toBe(200);
  return r.body.Token;
}

describe('federation of three regions', () => {
  let dc1: Region;
  let dc2: Region;
  let dc3: Region;
  let wan3: WanLink;
  const dirs = { dc1: mkdtempSync(join(tmpdir(), 'isthmus-fed-dc1-')), dc3: mkdtempSync(join(tmpdir(), 'isthmus-fed-dc3-')) };
  // The primary keeps its ports across a restart, as a real server would.
  const dc1Flags = { 'http-addr': '127.0.1.1:18510', 'grpc-addr': '127.0.1.1:18512', 'grpc-tls-addr': '127.0.1.1:18513' };
  let dc3Token = '';

  beforeAll(async () => {
    dc1 = await region('dc1', '127.0.1.1', dc1Flags, dirs.dc1);
    dc2 = await region('dc2', '127.0.2.1', { 'join-token': await tokenFor(dc1, 'dc2') });
    // dc3 reaches the primary through a WAN link that the tests can cut.
    wan3 = new WanLink({ listen: { host: '127.0.3.1' }, target: { host: '127.0.1.1', port: 18513 } });
    await wan3.start();
    dc3Token = via(await tokenFor(dc1, 'dc3'), wan3.address);
    dc3 = await region('dc3', '127.0.3.1', { 'join-token': dc3Token }, dirs.dc3);
  }, 60_000);

  afterAll(async () => {
    await Promise.all([dc3?.stop(), dc2?.stop()]);
    await dc1?.stop();
    await wan3?.stop();
    for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  });

  it('joins with one trust domain, intermediates signed by the primary root, and lists every DC', async () => {
    expect(dc2.trustDomain).toBe(dc1.trustDomain);
    expect(dc3.trustDomain).toBe(dc1.trustDomain);
    const root = dc1.ca.activeRoot()!;
    expect(dc2.ca.intermediate()!.RootID).toBe(root.ID);
    expect(dc3.ca.intermediate()!.RootID).toBe(root.ID);
    await until('links up', () => dc1.federation.status().Peers.filter((p) => p.State === 'up').length === 2);
    const dcs = await api(dc2, 'GET', '/v1/catalog/datacenters');
    expect(dcs.body).toEqual(['dc1', 'dc2', 'dc3']);
    // Link state and lag are Prometheus gauges too.
    const metrics = await (await fetch(`http://${dc1.httpAddress}/metrics`)).text();
    expect(metrics).toMatch(/isthmus_federation_link_up\{[^}]*peer="dc2"[^}]*\} 1/);
    expect(metrics).toMatch(/isthmus_federation_replication_lag_seconds\{[^}]*peer="dc3"[^}]*\} 0/);
    // A leaf signed in dc2 verifies against the primary's root.
    const leaf = await api(dc2, 'GET', '/v1/agent/connect/ca/leaf/web');
    expect(leaf.body.ServiceURI).toBe(`spiffe://${dc1.trustDomain}/ns/default/dc/dc2/svc/web`);
  });

  it('renews a secondary intermediate over its server identity, and only for its own DC', async () => {
    const { newKeyPem, publicKeyPemOf, inspectCertificate } = await import('../../src/ca/index.js');
    const pub = await publicKeyPemOf(await newKeyPem());
    const signed = await dc2.federation.signRemote('dc2', pub);
    expect(signed.rootId).toBe(dc1.ca.activeRoot()!.ID);
    expect(inspectCertificate(signed.certPem).isCa).toBe(true);
    await expect(dc2.federation.signRemote('dc3', pub)).rejects.toMatchObject({ code: 'ISTHMUS_ERR_PERMISSION_DENIED' });
  });

  it('refuses a reused token and a forged one', async () => {
    const token = await tokenFor(dc1, 'dc4');
    const first = await region('dc4', '127.0.4.1', { 'join-token': token });
    await first.stop();
    await expect(region('dc4', '127.0.4.2', { 'join-token': token })).rejects.toMatchObject({
      code: 'ISTHMUS_ERR_PERMISSION_DENIED',
      message: expect.stringMatching(/already used/),
    });
    const forged = JSON.parse(Buffer.from(token.slice('isthmus-join.'.length), 'base64url').toString());
    forged.dc = 'dc5';
    forged.secret = 'x'.repeat(43);
    await expect(
      region('dc5', '127.0.5.1', { 'join-token': 'isthmus-join.' + Buffer.from(JSON.stringify(forged)).toString('base64url') }),
    ).rejects.toMatchObject({ code: 'ISTHMUS_ERR_PERMISSION_DENIED' });
  });

  it('forwards an intention written in a secondary to the primary, and every DC enforces it, with receipts', async () => {
    const w = await api(dc2, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db&wait-for=all&timeout=2s', { Action: 'deny' });
    expect(w.status).toBe(200);
    expect(w.headers.get('x-isthmus-forwarded-to')).toBe('dc1');
    const receipts = JSON.parse(w.headers.get('x-isthmus-receipts')!);
    // dc4 joined in the test before and is gone: the receipt says so instead of pretending.
    const applied = Object.fromEntries(receipts.Datacenters.map((r: { Datacenter: string; Applied: boolean }) => [r.Datacenter, r.Applied]));
    expect(applied).toEqual({ dc1: true, dc2: true, dc3: true, dc4: false });
    expect(receipts.Complete).toBe(false);
    // Written at the primary (never locally in dc2), readable everywhere.
    expect(dc1.intentions.getExact('web', 'db')?.Action).toBe('deny');
    expect(dc2.intentions.getExact('web', 'db')?.Action).toBe('deny');
    expect(dc3.intentions.getExact('web', 'db')?.Action).toBe('deny');
    const check = await api(dc3, 'GET', '/v1/connect/intentions/check?source=web&destination=db');
    expect(check.body.Allowed).toBe(false);
    // The audit event names the DC the write came in through.
    const audit = await api(dc1, 'GET', '/v1/audit');
    expect(JSON.stringify(audit.body)).toMatch(/"DC":"dc2"/);
  });

  it('forwards config entries written in a secondary to the primary, replicates them to every DC, with receipts', async () => {
    const receiptsOf = (w: { headers: Headers }) => {
      const r = JSON.parse(w.headers.get('x-isthmus-receipts')!);
      return Object.fromEntries(r.Datacenters.map((d: { Datacenter: string; Applied: boolean }) => [d.Datacenter, d.Applied]));
    };
    const sd = await api(dc2, 'PUT', '/v1/config?wait-for=all&timeout=2s', { Kind: 'service-defaults', Name: 'shop', Protocol: 'http' });
    expect([sd.status, sd.body]).toEqual([200, true]);
    expect(sd.headers.get('x-isthmus-forwarded-to')).toBe('dc1');
    // dc4 is gone (see the intention test above): every live DC applied it.
    expect(receiptsOf(sd)).toEqual({ dc1: true, dc2: true, dc3: true, dc4: false });
    // The router sends to shop-admin, which must speak shop's protocol for the chain to compile.
    expect((await api(dc1, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'shop-admin', Protocol: 'http' })).status).toBe(200);
    const route = {
      Kind: 'service-router',
      Name: 'shop',
      Routes: [{ Match: { HTTP: { PathPrefix: '/admin', Header: [{ Name: 'x-canary', Exact: '1' }] } }, Destination: { Service: 'shop-admin' } }],
    };
    const sr = await api(dc3, 'PUT', '/v1/config?wait-for=all&timeout=2s', route);
    expect([sr.status, sr.body]).toEqual([200, true]);
    expect(receiptsOf(sr)).toEqual({ dc1: true, dc2: true, dc3: true, dc4: false });
    // Written at the primary, readable everywhere (read-your-writes in the DC that was asked).
    for (const r of [dc1, dc2, dc3]) {
      expect(r.configEntries.get('service-defaults', 'shop')?.Protocol).toBe('http');
      expect(r.configEntries.get('service-router', 'shop')?.Routes?.[0].Destination?.Service).toBe('shop-admin');
    }
    const read = await api(dc3, 'GET', '/v1/config/service-router/shop');
    expect(read.body).toMatchObject({ Kind: 'service-router', Name: 'shop', Routes: route.Routes });
    // The primary's refusal comes back through the forwarding: a protocol change to tcp under a router.
    const tcp = await api(dc2, 'PUT', '/v1/config', { Kind: 'service-defaults', Name: 'shop', Protocol: 'tcp' });
    expect(tcp.status).toBe(400);
    expect(tcp.body.Violations).toEqual([
      { Field: 'Protocol', Message: 'discovery chain "shop" uses a protocol "tcp" that does not permit advanced routing or splitting behavior' },
    ]);
    expect(dc2.configEntries.get('service-defaults', 'shop')?.Protocol).toBe('http');
    // ...and a chain that would not compile: a route to a subset shop has no resolver for.
    const subset = await api(dc3, 'PUT', '/v1/config', { ...route, Routes: [{ Destination: { ServiceSubset: 'v9' } }] });
    expect([subset.status, subset.body.Violations]).toEqual([
      400,
      [{ Field: 'Routes[0].Destination.ServiceSubset', Message: 'service "shop" does not have a subset named "v9"' }],
    ]);
    expect(dc1.configEntries.get('service-router', 'shop')?.Routes?.[0].Destination?.Service).toBe('shop-admin');
    // Check-and-set is decided at the primary, against its ModifyIndex: a stale one answers false
    // and changes nothing; the current one deletes, everywhere.
    const at = dc1.configEntries.get('service-router', 'shop')!.ModifyIndex;
    const stale = await api(dc2, 'DELETE', `/v1/config/service-router/shop?cas=${at - 1}`);
    expect([stale.status, stale.body]).toEqual([200, false]);
    expect(dc1.configEntries.get('service-router', 'shop')).toBeDefined();
    const del = await api(dc2, 'DELETE', `/v1/config/service-router/shop?cas=${at}&wait-for=all&timeout=2s`);
    expect([del.status, del.body]).toEqual([200, true]);
    for (const r of [dc1, dc2, dc3]) expect(r.configEntries.get('service-router', 'shop')).toBeUndefined();
    const audit = await api(dc1, 'GET', '/v1/audit');
    expect(
      audit.body.some((e: { Kind: string; Subject: string; DC: string }) => e.Kind === 'config-entry' && e.Subject === 'service-router/shop' && e.DC === 'dc3'),
    ).toBe(true);
    // A service-intentions entry is the destination's intentions: forwarded, replicated, and read
    // back in every DC through both APIs; its L7 source is checked at the primary against shop's http.
    const perms = [{ Action: 'allow', HTTP: { PathPrefix: '/admin' } }];
    const si = await api(dc2, 'PUT', '/v1/config?wait-for=all&timeout=2s', {
      Kind: 'service-intentions',
      Name: 'shop',
      Sources: [{ Name: 'web', Permissions: perms }],
    });
    expect([si.status, si.body]).toEqual([200, true]);
    expect(receiptsOf(si)).toEqual({ dc1: true, dc2: true, dc3: true, dc4: false });
    const shopSources = (r: typeof dc1) =>
      r.intentions
        .list()
        .filter((i) => i.DestinationName === 'shop')
        .map((i) => [i.SourceName, i.Permissions]);
    for (const r of [dc1, dc2, dc3]) expect(shopSources(r)).toEqual([['web', perms]]);
    expect((await api(dc3, 'GET', '/v1/config/service-intentions/shop')).body.Sources).toEqual([expect.objectContaining({ Name: 'web', Permissions: perms })]);
    const siDel = await api(dc3, 'DELETE', '/v1/config/service-intentions/shop?wait-for=all&timeout=2s');
    expect(siDel.status).toBe(200);
    for (const r of [dc1, dc2, dc3]) expect(shopSources(r)).toEqual([]);
  });

  it('teaches secondaries a changed primary gateway address through replication', async () => {
    // A gateway of dc1 appears (its WAN address standing in for a new one) and then goes away.
    const wan = dc1.federation.address;
    const [host, port] = wan.split(':');
    const reg = await api(dc1, 'PUT', '/v1/agent/service/register', {
      ID: 'gw-new',
      Name: 'mesh-gateway',
      Kind: 'mesh-gateway',
      Address: host,
      Port: Number(port),
      TaggedAddresses: { wan: { Address: host, Port: Number(port) } },
    });
    expect(reg.status).toBe(200);
    for (const r of [dc2, dc3]) await until(`${r.config.dc} learns it`, () => r.federation.gateways('dc1').includes(wan));
    await api(dc1, 'PUT', '/v1/agent/service/deregister/gw-new');
    for (const r of [dc2, dc3]) await until(`${r.config.dc} forgets it`, () => !r.federation.gateways('dc1').includes(wan));
  });

  it('exports catalogs: ?dc=dc3 from dc2 answers from the replica, with its staleness', async () => {
    await api(dc3, 'PUT', '/v1/agent/service/register', { Name: 'db', Port: 5432, Tags: ['primary'] });
    const got = (await until('db exported to dc1', async () => {
      const r = await api(dc1, 'GET', '/v1/health/service/db?dc=dc3');
      return r.body.length === 1 ? r : undefined;
    }))!;
    expect(got.body[0].Service).toMatchObject({ Service: 'db', Tags: ['primary'] });
    expect(Number(got.headers.get('x-consul-lastcontact'))).toBeGreaterThanOrEqual(0);
    const services = await api(dc1, 'GET', '/v1/catalog/services?dc=dc3');
    expect(services.body.db).toEqual(['primary']);
    const nowhere = await api(dc1, 'GET', '/v1/catalog/services?dc=dc9');
    expect(nowhere.status).toBe(404);
  });

  it('answers flow queries across DCs, merged, naming the DCs that did not answer', async () => {
    const rec = (dc: string, id: string, hop: string) => ({
      id,
      traceId: 'ab'.repeat(16),
      requestIndex: 0,
      hop,
      dc,
      reporter: `${hop}-${dc}`,
      source: { spiffeId: '', service: 'web', namespace: 'default', dc: 'dc1' },
      destination: { spiffeId: '', service: 'api', namespace: 'default', dc: 'dc2' },
      sni: 'api.default.dc2.internal.x',
      verdict: 'allowed',
      reason: 'ok',
      intentionId: '',
      intentionDc: '',
      intentionIndex: 0,
      startTime: Date.now(),
      durationMs: 1,
      bytesIn: 1,
      bytesOut: 1,
    });
    dc1.flows.append([rec('dc1', 'r1', 'client-sidecar') as never]);
    dc2.flows.append([rec('dc2', 'r2', 'server-sidecar') as never]);
    const both = await api(dc2, 'GET', `/v1/flows?dc=dc1,dc2&trace=${'ab'.repeat(16)}`);
    expect(both.status).toBe(200);
    expect(both.body.Records.map((r: { id: string }) => r.id).sort()).toEqual(['r1', 'r2']);
    expect(both.body.Missing).toEqual([]);
    // dc2 knows no address of dc3 here (no gateways in this test): it says so instead of hanging.
    const all = await api(dc2, 'GET', `/v1/flows?dc=all&trace=${'ab'.repeat(16)}&timeout=1s`);
    expect(all.body.Records.length).toBe(2);
    expect(all.body.Missing).toEqual(['dc3', 'dc4']); // dc4 joined earlier in this file and is gone
    expect(all.body.Errors.dc3).toMatch(/dc3/);
    const bad = await api(dc2, 'GET', '/v1/flows?dc=dc9');
    expect(bad.status).toBe(400);
  });

  it('replicates CA configuration and a root rotation; secondaries re-sign their intermediates under the new root', async () => {
    const cfg = await api(dc3, 'PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '24h' } });
    expect(cfg.status).toBe(200);
    await until('ca config in dc2', () => dc2.ca.config().LeafCertTTL === 24 * 3_600_000);
    const rot = await api(dc2, 'POST', '/v1/connect/ca/rotate');
    expect(rot.status).toBe(200);
    const active = dc1.ca.activeRoot()!.ID;
    for (const r of [dc2, dc3]) {
      await until(`new root and intermediate in ${r.config.dc}`, () => r.ca.activeRoot()?.ID === active && r.ca.intermediate()?.RootID === active);
      expect(r.ca.roots().length).toBe(2); // the old root stays trusted until its leaves expire
    }
  });

  it('a partitioned DC keeps its last state, shows the broken link, and catches up once healed', async () => {
    wan3.blackhole();
    await until('dc1 sees dc3 down', () => dc1.federation.status().Peers.find((p) => p.Datacenter === 'dc3')?.State !== 'up');
    await api(dc1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=cache', { Action: 'deny' });
    await api(dc2, 'PUT', '/v1/connect/intentions/exact?source=web&destination=queue', { Action: 'deny' });
    await new Promise((r) => setTimeout(r, 3 * HB));
    expect(() => dc3.intentions.getExact('web', 'cache')).toThrow(/no intention/);
    const lag = dc1.federation.status().Peers.find((p) => p.Datacenter === 'dc3')!;
    expect(lag.ReplicationLagMs).toBeGreaterThan(0);
    wan3.heal();
    await until('dc3 catches up', () => dc3.intentions.getExact('web', 'queue')?.Action === 'deny', 15_000);
    expect(dc3.intentions.getExact('web', 'cache').Action).toBe('deny');
    await until('lag back to 0', () => dc1.federation.status().Peers.find((p) => p.Datacenter === 'dc3')!.ReplicationLagMs === 0);
  });

  it('a secondary down through intention changes and a rotation converges when it comes back', async () => {
    await dc3.stop();
    await api(dc1, 'PUT', '/v1/connect/intentions/exact?source=web&destination=search', { Action: 'allow' });
    await api(dc1, 'DELETE', '/v1/connect/intentions/exact?source=web&destination=cache');
    await api(dc1, 'POST', '/v1/connect/ca/rotate');
    const active = dc1.ca.activeRoot()!.ID;
    // Back with the data it had; the token in its flags is not used again.
    dc3 = await region('dc3', '127.0.3.1', { 'join-token': dc3Token }, dirs.dc3);
    await until(
      'dc3 converged',
      () => dc3.intentions.list().some((i) => i.DestinationName === 'search') && !dc3.intentions.list().some((i) => i.DestinationName === 'cache'),
      15_000,
    );
    await until('dc3 on the new root', () => dc3.ca.activeRoot()?.ID === active && dc3.ca.intermediate()?.RootID === active, 15_000);
  });

  it('keeps authorizing and signing with the primary down, refuses writes with 503, and converges when it is back', async () => {
    await dc1.stop();
    const write = await api(dc2, 'PUT', '/v1/connect/intentions/exact?source=a&destination=b', { Action: 'allow' });
    expect(write.status).toBe(503);
    expect(write.body.Error).toBe('ISTHMUS_ERR_PRIMARY_UNREACHABLE');
    expect(write.body.Message).toMatch(/dc1 cannot be reached/);
    expect(() => dc2.intentions.getExact('a', 'b')).toThrow(/no intention/);
    const check = await api(dc3, 'GET', '/v1/connect/intentions/check?source=web&destination=db');
    expect(check.body.Allowed).toBe(false);
    const leaf = await api(dc3, 'GET', '/v1/agent/connect/ca/leaf/api');
    expect(leaf.status).toBe(200);
    const st = await api(dc2, 'GET', '/v1/federation/status');
    expect(st.body.Peers.find((p: { Datacenter: string }) => p.Datacenter === 'dc1').State).not.toBe('up');

    dc1 = await region('dc1', '127.0.1.1', dc1Flags, dirs.dc1);
    expect(dc1.intentions.getExact('web', 'db').Action).toBe('deny'); // nothing lost
    await until('links back', () => dc1.federation.status().Peers.filter((p) => p.State === 'up').length >= 2, 15_000);
    const again = await api(dc2, 'PUT', '/v1/connect/intentions/exact?source=a&destination=b', { Action: 'allow' });
    expect(again.status).toBe(200);
    await until('dc3 has it', () => dc3.intentions.list().some((i) => i.SourceName === 'a' && i.DestinationName === 'b'));
  });

  it('takes a departed DC out: receipts complete again, its catalog is forgotten everywhere, its server is refused', async () => {
    // dc4 joined in a test above and is gone for good. Removed through a secondary: forwarded.
    const gone = await api(dc2, 'DELETE', '/v1/federation/members/dc4');
    expect(gone.status).toBe(200);
    expect(gone.headers.get('x-isthmus-forwarded-to')).toBe('dc1');
    expect(gone.body.Datacenter).toBe('dc4');
    for (const r of [dc1, dc2, dc3]) await until(`${r.federation.dc} forgets dc4`, () => !r.federation.datacenters().includes('dc4'));
    expect((await api(dc3, 'GET', '/v1/catalog/datacenters')).body).toEqual(['dc1', 'dc2', 'dc3']);
    const w = await api(dc1, 'PUT', '/v1/connect/intentions/exact?source=c&destination=d&wait-for=all&timeout=5s', { Action: 'allow' });
    const receipts = JSON.parse(w.headers.get('x-isthmus-receipts')!);
    expect(receipts.Datacenters.map((r: { Datacenter: string }) => r.Datacenter)).toEqual(['dc1', 'dc2', 'dc3']);
    expect(receipts.Complete).toBe(true);
    const audit = await api(dc1, 'GET', '/v1/audit');
    expect(JSON.stringify(audit.body)).toMatch(/datacenter dc4/);

    // Refused, changing nothing: the primary itself, a DC that is not a member.
    const self = await api(dc1, 'DELETE', '/v1/federation/members/dc1');
    expect(self.status).toBe(400);
    expect(self.body.Violations[0].Field).toBe('dc');
    const unknown = await api(dc1, 'DELETE', '/v1/federation/members/dc9');
    expect(unknown.status).toBe(404);
    expect(unknown.body.Message).toMatch(/dc9 is not a member/);

    // dc3, still running, removed: its exported catalog goes in dc1 and dc2, its links close, and
    // its server identity is refused when it dials again.
    expect(dc1.federation.exportedServices('dc3').length).toBeGreaterThan(0);
    const removed = await api(dc1, 'DELETE', '/v1/federation/members/dc3');
    expect(removed.status).toBe(200);
    expect(removed.body.ExportedServices).toBe(1); // db, registered in dc3 by a test above
    for (const r of [dc1, dc2]) {
      await until(
        `${r.federation.dc} drops dc3`,
        () =>
          !r.federation.datacenters().includes('dc3') &&
          r.federation.exportedServices('dc3').length === 0 &&
          !r.federation.status().Peers.some((p) => p.Datacenter === 'dc3'),
      );
    }
    expect((await api(dc1, 'GET', '/v1/catalog/services?dc=dc3')).status).toBe(404);
    await until('dc3 refused by the primary', () => {
      const toPrimary = dc3.federation.status().Peers.find((p) => p.Datacenter === 'dc1');
      return toPrimary && toPrimary.State !== 'up' && /not a member/.test(toPrimary.LastError) ? toPrimary : undefined;
    });
    // It stays out: a while later, still no link and nothing of it back.
    await new Promise((r) => setTimeout(r, 3 * HB));
    expect(dc1.federation.datacenters()).toEqual(['dc1', 'dc2']);
    expect(dc1.federation.status().Peers.map((p) => p.Datacenter)).toEqual(['dc2']);
  });
});

// Intentions and ACL are written at the primary only. A write at a secondary is forwarded there and
// checked there (and fails with 503, changing nothing, while the primary cannot be reached); a
// secondary's server identity on the primary's peer stream cannot push replicated tables into it;
// a write in the secondary that bypasses forwarding is refused. Two regions with default-deny ACL
// in this process: dc1 on 127.0.13.1 and dc2 on 127.0.13.2, dc2 reaching dc1 through a WAN link.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Region } from '../../src/region/index.js';
import { AuditLog, type Actor } from '../../src/core/audit.js';
import { serverSni } from '../../src/core/names.js';
import type { ForwardRequest, ForwardResponse, PeerMessage } from '../../src/federation/proto.js';
import { WanLink } from '../harness/wan-link.js';
import { call, fedClient, http, peerStream, region, until } from './helpers.js';

let dc1: Region;
let dc2: Region;
let wan: WanLink;
let mgmt = '';
const url = (r: Region) => `http://${r.httpAddress}`;
const REPLICATED = ['intentions', 'config-entries', 'acl-tokens', 'acl-policies', 'acl-meta', 'ca-roots', 'ca-config', 'audit', 'fed-members'];
const state = (r: Region) => REPLICATED.map((t) => `${t}@${r.store.tableIndex(t)}:${r.store.list(t).length}`);
const actor: Actor = { accessorId: '00000000-0000-0000-0000-000000000009', description: 'in-process caller', dc: 'dc2' };

/** The same join token, with the primary reached through `addr` instead. */
function via(token: string, addr: string): string {
  const t = JSON.parse(Buffer.from(token.slice('isthmus-join.'.length), 'base64url').toString());
  t.servers = [addr];
  t.gateways = [];
  return 'isthmus-join.' + Buffer.from(JSON.stringify(t)).toString('base64url');
}

beforeAll(async () => {
  dc1 = await region('dc1', '127.0.13.1', { 'acl-default-policy': 'deny' });
  const boot = await http(url(dc1), 'PUT', '/v1/acl/bootstrap');
  expect(boot.status).toBe(200);
  mgmt = boot.body.SecretID;
  const [host, port] = dc1.federation.address.split(':');
  wan = new WanLink({ listen: { host: '127.0.13.2' }, target: { host, port: Number(port) } });
  await wan.start();
  const t = await http(url(dc1), 'POST', '/v1/federation/token', { Datacenter: 'dc2' }, mgmt);
  expect(t.status).toBe(200);
  dc2 = await region('dc2', '127.0.13.2', { 'acl-default-policy': 'deny', 'join-token': via(t.body.Token, wan.address) });
  await until('dc2 linked to dc1', () => dc2.federation.status().Peers.some((p) => p.Datacenter === 'dc1' && p.State === 'up'), 15_000);
  // The management token replicated: it works in dc2 too.
  await until('the token in dc2', async () => (await http(url(dc2), 'GET', '/v1/acl/tokens', undefined, mgmt)).status === 200);
}, 60_000);

afterAll(async () => {
  await dc2?.stop();
  await dc1?.stop();
  await wan?.stop();
});

describe('writes of replicated kinds in a secondary', () => {
  it('forwards an intention written at the secondary to the primary, where the token is checked', async () => {
    const w = await http(url(dc2), 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', { Action: 'deny' }, mgmt);
    expect(w.status).toBe(200);
    expect(w.headers.get('x-isthmus-forwarded-to')).toBe('dc1');
    expect(dc1.intentions.getExact('web', 'db').Action).toBe('deny');
    // Back through replication before the answer: read-your-writes in dc2.
    expect(dc2.intentions.getExact('web', 'db').Action).toBe('deny');
    const audit = new AuditLog(dc1.store).events().find((e) => e.Subject === 'web => db');
    expect(audit?.DC).toBe('dc2');

    // Without a token (default deny) the primary refuses it, and nothing changes anywhere.
    const before = [state(dc1), state(dc2)];
    const anon = await http(url(dc2), 'PUT', '/v1/connect/intentions/exact?source=web&destination=cache', { Action: 'allow' });
    expect(anon.status).toBe(403);
    expect(anon.body.Error).toBe('ISTHMUS_ERR_PERMISSION_DENIED');
    expect(anon.headers.get('x-isthmus-forwarded-to')).toBe('dc1');
    expect([state(dc1), state(dc2)]).toEqual(before);
  });

  it('refuses a write in the secondary that bypasses forwarding', async () => {
    const before = state(dc2);
    const primaryBefore = state(dc1);
    const refusals = [
      dc2.intentions.upsertExact('web', 'cache', { Action: 'allow' }, actor),
      dc2.intentions.create({ SourceName: 'web', DestinationName: 'queue', Action: 'allow' }, actor),
      dc2.intentions.deleteExact('web', 'db', actor),
      dc2.acl.upsertPolicy({ Name: 'local-only', Rules: 'operator = "write"' }, actor),
      dc2.acl.upsertToken({ Description: 'local-only', Policies: [{ Name: 'global-management' }] }, actor),
      dc2.acl.bootstrap(actor),
      dc2.ca.setConfig({ LeafCertTTL: 3_600_000 }, actor),
    ];
    for (const p of refusals) await expect(p).rejects.toMatchObject({ code: 'ISTHMUS_ERR_PRIMARY_UNREACHABLE' });
    expect(state(dc2)).toEqual(before);
    expect(state(dc1)).toEqual(primaryBefore);
    expect(dc2.intentions.getExact('web', 'db').Action).toBe('deny');
    expect(() => dc2.intentions.getExact('web', 'cache')).toThrow();
  });

  it("ignores replicated tables pushed into the primary by a secondary's server identity", async () => {
    const before = state(dc1);
    const own = await dc2.ca.issueServerCert();
    const id = { certPem: own.certPem, keyPem: own.keyPem, chain: own.chain };
    const secret = '11111111-2222-3333-4444-555555555555';
    const intention = {
      ID: '99999999-0000-0000-0000-000000000001',
      SourceNS: 'default',
      SourceName: '*',
      DestinationNS: 'default',
      DestinationName: 'db',
      Action: 'allow',
      Precedence: 8,
      SourceType: 'consul',
      Meta: {},
      CreatedAt: '',
      UpdatedAt: '',
    };
    const token = {
      AccessorID: '99999999-0000-0000-0000-000000000002',
      SecretID: secret,
      Description: 'pushed',
      Policies: [{ ID: '00000000-0000-0000-0000-000000000001', Name: 'global-management' }],
      Local: false,
      CreateTime: '',
    };
    const activeRoot = dc1.ca.activeRoot()!.ID;
    const changes: PeerMessage[] = [
      {
        changes: {
          snapshot: false,
          index: 1_000_000,
          committedAtMs: Date.now(),
          resources: [
            { table: 'intentions', key: 'default/*/default/db', op: 'put', valueJson: JSON.stringify(intention), index: 1_000_000 },
            { table: 'acl-tokens', key: token.AccessorID, op: 'put', valueJson: JSON.stringify(token), index: 1_000_000 },
            { table: 'ca-roots', key: activeRoot, op: 'delete', valueJson: '', index: 1_000_000 },
          ],
        },
      },
      // A snapshot with nothing in it would empty every replicated table of a DC that applied it.
      { changes: { snapshot: true, index: 1_000_001, committedAtMs: Date.now(), resources: [] } },
    ];
    const c = fedClient(dc1.federation.address, serverSni({ dc: 'dc1', trustDomain: dc1.trustDomain }), dc1.ca.bundle().roots, id);
    try {
      const acks = (got: PeerMessage[]) => got.filter((m) => m.ack?.stream === 'changes' && Number(m.ack.index) >= 1_000_000).length;
      const out = await peerStream(c, [{ hello: { datacenter: 'dc2', resumeIndex: 0, version: 'test' } }, ...changes], 8000, (got) => acks(got) >= 2);
      // The link was accepted (a real peer identity) and both batches were taken in and passed over.
      expect(out.received[0]?.hello?.datacenter).toBe('dc1');
      expect(acks(out.received)).toBe(2);

      // Forward is the only way in, and it is checked against the token it carries.
      const noToken = await call<ForwardRequest, ForwardResponse>(c, 'forward', {
        method: 'PUT',
        path: '/v1/acl/token',
        body: JSON.stringify({ Policies: [{ Name: 'global-management' }] }),
        token: '',
        originDatacenter: 'dc2',
      });
      expect(noToken.ok?.status).toBe(403);
      const unknown = await call<ForwardRequest, ForwardResponse>(c, 'forward', {
        method: 'PUT',
        path: '/v1/connect/intentions/exact?source=*&destination=db',
        body: '{"Action":"allow"}',
        token: secret,
        originDatacenter: 'dc2',
      });
      expect(unknown.ok?.status).toBe(403);
    } finally {
      c.close();
    }
    expect(state(dc1)).toEqual(before);
    expect(() => dc1.intentions.getExact('*', 'db')).toThrow();
    expect(dc1.ca.activeRoot()?.ID).toBe(activeRoot);
    expect((await http(url(dc1), 'GET', '/v1/acl/token/self', undefined, secret)).status).toBe(403);
    // The secondary still has what the primary has: nothing of the pushed batches came back to it.
    await until('dc2 linked again', () => dc2.federation.status().Peers.some((p) => p.Datacenter === 'dc1' && p.State === 'up'), 15_000);
    expect(() => dc2.intentions.getExact('*', 'db')).toThrow();
    expect(dc2.ca.roots().map((r) => r.ID)).toContain(activeRoot);
  });

  it('fails a write at the secondary with 503 while the primary is unreachable, changing nothing', async () => {
    wan.cut();
    try {
      await until('dc2 to see dc1 gone', () => dc2.federation.status().Peers.find((p) => p.Datacenter === 'dc1')?.State !== 'up', 10_000);
      const before = [state(dc1), state(dc2)];
      const writes = [
        await http(url(dc2), 'PUT', '/v1/connect/intentions/exact?source=web&destination=cache', { Action: 'allow' }, mgmt),
        await http(url(dc2), 'DELETE', '/v1/connect/intentions/exact?source=web&destination=db', undefined, mgmt),
        await http(url(dc2), 'PUT', '/v1/acl/policy', { Name: 'while-cut', Rules: 'operator = "read"' }, mgmt),
        await http(url(dc2), 'PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '2h' } }, mgmt),
      ];
      for (const w of writes) {
        expect(w.status).toBe(503);
        expect(w.body.Error).toBe('ISTHMUS_ERR_PRIMARY_UNREACHABLE');
        expect(w.body.Message).toMatch(/nothing was changed/);
      }
      expect([state(dc1), state(dc2)]).toEqual(before);
      expect(dc2.intentions.getExact('web', 'db').Action).toBe('deny');
      // Reads keep being answered from what was replicated.
      expect((await http(url(dc2), 'GET', '/v1/connect/intentions/exact?source=web&destination=db', undefined, mgmt)).status).toBe(200);
    } finally {
      wan.heal();
    }
  });
});

// L4 on the federation listener (--grpc-tls-addr): only the server identity of another member DC,
// signed by that DC's own intermediate under a root still in the bundle, gets an RPC served. No
// certificate, a self-signed one, a chain from a CA of its own, a service leaf, a server identity
// minted by another DC's CA, or a leaf of a root rotated out: each call is refused before anything
// is served or changed. And a DC dialing a peer does not take another DC's minted identity for it.
// Two regions in this process on 127.0.12.1 (primary) and 127.0.12.2.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Region } from '../../src/region/index.js';
import { newKeyPem, publicKeyPemOf, type CaRoot } from '../../src/ca/index.js';
import { serverSni, serverSpiffeId } from '../../src/core/names.js';
import {
  federationService,
  type ForwardRequest,
  type ForwardResponse,
  type SignRequest,
  type SignResponse,
  type JoinRequest,
  type JoinResponse,
} from '../../src/federation/proto.js';
import { clientCredentials } from '../../src/federation/tls.js';
import { call, fedClient, http, mintedBy, peerStream, region, rogueCa, selfSigned, until, type Identity } from './helpers.js';

let dc1: Region;
let dc2: Region;
let td = '';
let publicKeyPem = '';

const QUERY: ForwardRequest = { method: 'GET', path: '/v1/flows', body: '', token: '', originDatacenter: 'dc2' };
const WRITE: ForwardRequest = {
  method: 'PUT',
  path: '/v1/connect/intentions/exact?source=intruder&destination=db',
  body: JSON.stringify({ Action: 'allow' }),
  token: '',
  originDatacenter: 'dc2',
};
const HELLO = { hello: { datacenter: 'dc2', resumeIndex: 0, version: 'test' } };

/** The tables an accepted call could have changed at the primary. */
function primaryState() {
  return ['intentions', 'acl-tokens', 'acl-policies', 'ca-roots', 'ca-config', 'fed-members', 'fed-join-tokens', 'audit'].map(
    (t) => `${t}@${dc1.store.tableIndex(t)}`,
  );
}

/** Every RPC but Join, as `id` (or with no certificate), against the primary's listener. */
async function callAll(id: Identity | undefined) {
  const c = fedClient(dc1.federation.address, serverSni({ dc: 'dc1', trustDomain: td }), dc1.ca.bundle().roots, id);
  try {
    return {
      query: await call<ForwardRequest, ForwardResponse>(c, 'query', QUERY),
      forward: await call<ForwardRequest, ForwardResponse>(c, 'forward', WRITE),
      sign: await call<SignRequest, SignResponse>(c, 'signIntermediate', { datacenter: 'dc2', publicKeyPem }),
      stream: await peerStream(c, [HELLO], 1500, (got) => got.length > 0),
    };
  } finally {
    c.close();
  }
}

/** Only the harmless read, as `id`. */
async function queryAs(id: Identity) {
  const c = fedClient(dc1.federation.address, serverSni({ dc: 'dc1', trustDomain: td }), dc1.ca.bundle().roots, id);
  try {
    return await call<ForwardRequest, ForwardResponse>(c, 'query', QUERY);
  } finally {
    c.close();
  }
}

async function expectAllRefused(id: Identity | undefined): Promise<void> {
  const before = primaryState();
  const r = await callAll(id);
  for (const unary of [r.query, r.forward, r.sign]) {
    expect(unary.ok).toBeUndefined();
    expect(unary.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(unary.details).toMatch(/^ISTHMUS_ERR_PERMISSION_DENIED: /);
  }
  // The stream is ended before the primary says anything (no hello, no replicated table).
  expect(r.stream.received).toEqual([]);
  expect(r.stream.code).toBe(grpc.status.UNAUTHENTICATED);
  expect(() => dc1.intentions.getExact('intruder', 'db')).toThrow();
  expect(primaryState()).toEqual(before);
}

beforeAll(async () => {
  dc1 = await region('dc1', '127.0.12.1');
  td = dc1.trustDomain;
  const t = await http(`http://${dc1.httpAddress}`, 'POST', '/v1/federation/token', { Datacenter: 'dc2' });
  expect(t.status).toBe(200);
  dc2 = await region('dc2', '127.0.12.2', { 'join-token': t.body.Token });
  await until('dc2 linked to dc1', () => dc1.federation.status().Peers.some((p) => p.Datacenter === 'dc2' && p.State === 'up'), 15_000);
  publicKeyPem = await publicKeyPemOf(await newKeyPem());
}, 60_000);

afterAll(async () => {
  await dc2?.stop();
  await dc1?.stop();
});

describe('the federation listener', () => {
  it("serves the server identity of a member DC signed by that DC's own CA (the probe works)", async () => {
    const r = await callAll(await dc2.ca.issueServerCert());
    expect(r.query.ok?.status).toBe(200);
    expect(r.sign.ok?.certPem).toMatch(/BEGIN CERTIFICATE/);
    // The primary greets a real peer at once (and a replacement link is what a reconnect looks like).
    expect(r.stream.received[0]?.hello?.datacenter).toBe('dc1');
    // The write itself is checked as any other: allowed here (default allow), so undo it.
    expect(r.forward.ok?.status).toBe(200);
    await http(`http://${dc1.httpAddress}`, 'DELETE', '/v1/connect/intentions/exact?source=intruder&destination=db');
  });

  it('refuses every call without a client certificate, and a join with a secret it never issued', async () => {
    await expectAllRefused(undefined);
    const c = fedClient(dc1.federation.address, serverSni({ dc: 'dc1', trustDomain: td }), dc1.ca.bundle().roots);
    try {
      const members = dc1.store.tableIndex('fed-members');
      const join = await call<JoinRequest, JoinResponse>(c, 'join', { secret: 'x'.repeat(43), datacenter: 'dc9', publicKeyPem });
      expect(join.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(dc1.store.tableIndex('fed-members')).toBe(members);
      expect(dc1.federation.datacenters()).not.toContain('dc9');
    } finally {
      c.close();
    }
  });

  it("refuses a self-signed certificate that carries a member server's SPIFFE ID", async () => {
    await expectAllRefused(await selfSigned(serverSpiffeId({ trustDomain: td, dc: 'dc2' })));
  });

  it('refuses a chain from a CA of the same trust domain that is not in the bundle', async () => {
    await expectAllRefused(await rogueCa(td, serverSpiffeId({ trustDomain: td, dc: 'dc2' })));
  });

  it('refuses a valid service leaf of the trust domain: only server identities speak federation', async () => {
    const leaf = await dc2.ca.issueLeaf('web');
    await expectAllRefused({ certPem: leaf.certPem, keyPem: leaf.keyPem, chain: leaf.chain });
  });

  it("refuses a server identity that one DC's CA minted for another DC (the primary's own, here)", async () => {
    await expectAllRefused(await mintedBy(dc2, serverSpiffeId({ trustDomain: td, dc: 'dc1' })));
    // And the primary's own identity, rightly signed, is not a peer of the primary either.
    await expectAllRefused(await dc1.ca.issueServerCert());
  });

  it('does not let a DC dialing the primary take a server that presents a minted primary identity', async () => {
    // A listener that answers every query, as a DC in the path (through its gateways) could run.
    const served: string[] = [];
    const listen = async (id: Identity) => {
      const server = new grpc.Server();
      const refuse = (_c: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED } as grpc.ServiceError, null);
      server.addService(federationService().service, {
        join: refuse,
        signIntermediate: refuse,
        forward: refuse,
        peerStream: (s: grpc.ServerDuplexStream<unknown, unknown>) => s.end(),
        query: (_c: unknown, cb: grpc.sendUnaryData<ForwardResponse>) => {
          served.push('query');
          cb(null, { status: 200, body: '{"Records":[]}', contentType: 'application/json', index: 1, receiptsJson: '' });
        },
      });
      const creds = grpc.ServerCredentials.createSsl(
        null,
        [{ private_key: Buffer.from(id.keyPem), cert_chain: Buffer.from([id.certPem, ...id.chain].map((x) => x.trim()).join('\n') + '\n') }],
        false,
      );
      const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.12.2:0', creds, (err, p) => (err ? rej(err) : res(p))));
      return { server, address: `127.0.12.2:${port}` };
    };
    const ask = async (address: string) => {
      const own = await dc2.ca.issueServerCert();
      const creds = clientCredentials({
        roots: dc2.ca.bundle().roots,
        certChainPem: [own.certPem, ...own.chain].join('\n'),
        keyPem: own.keyPem,
        trustDomain: td,
        peerDc: 'dc1',
      });
      const sni = serverSni({ dc: 'dc1', trustDomain: td });
      const Ctor = federationService();
      const c = new Ctor(address, creds, { 'grpc.ssl_target_name_override': sni, 'grpc.default_authority': sni, 'grpc.use_local_subchannel_pool': 1 }) as never;
      try {
        return await call<ForwardRequest, ForwardResponse>(c, 'query', QUERY);
      } finally {
        (c as grpc.Client).close();
      }
    };
    const real = await dc1.ca.issueServerCert();
    const genuine = await listen({ certPem: real.certPem, keyPem: real.keyPem, chain: real.chain });
    const forged = await listen(await mintedBy(dc2, serverSpiffeId({ trustDomain: td, dc: 'dc1' })));
    try {
      expect((await ask(genuine.address)).ok?.status).toBe(200);
      const refused = await ask(forged.address);
      expect(refused.ok).toBeUndefined();
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
      expect(served).toEqual(['query']);
    } finally {
      genuine.server.forceShutdown();
      forged.server.forceShutdown();
    }
  });

  it('refuses a server leaf whose root was rotated out of the trust bundle', async () => {
    const oldCert = await dc2.ca.issueServerCert();
    const asOld: Identity = { certPem: oldCert.certPem, keyPem: oldCert.keyPem, chain: oldCert.chain };
    expect((await queryAs(asOld)).ok?.status).toBe(200);
    expect((await http(`http://${dc1.httpAddress}`, 'PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '1m' } })).status).toBe(
      200,
    );
    const oldRootId = dc1.ca.activeRoot()!.ID;
    expect((await http(`http://${dc1.httpAddress}`, 'POST', '/v1/connect/ca/rotate')).status).toBe(200);
    const newRootId = dc1.ca.activeRoot()!.ID;
    await until('dc2 re-signed under the new root', () => dc2.ca.intermediate()?.RootID === newRootId, 15_000);
    // Both roots trusted until the old one retires (its leaves' TTL plus a margin): still served.
    expect((await queryAs(asOld)).ok?.status).toBe(200);

    // The retirement made due now, instead of waiting for it.
    const retiring = dc1.store.get<CaRoot>('ca-roots', oldRootId)!;
    await dc1.store.commit([
      {
        op: 'put',
        table: 'ca-roots',
        key: oldRootId,
        value: { ...retiring.value, RetireAfter: new Date(Date.now() - 1000).toISOString() },
        ifIndex: retiring.modifyIndex,
      },
    ]);
    await dc1.ca.tick();
    expect(dc1.ca.roots().map((r) => r.ID)).toEqual([newRootId]);
    // The secondary drops it when the retirement replicates, never on its own.
    await until('the retirement replicated to dc2', () => dc2.ca.roots().length === 1);

    await until('the listener to drop the old root', async () => (await queryAs(asOld)).code === grpc.status.PERMISSION_DENIED);
    await expectAllRefused(asOld);
    const fresh = await dc2.ca.issueServerCert();
    expect((await queryAs({ certPem: fresh.certPem, keyPem: fresh.keyPem, chain: fresh.chain })).ok?.status).toBe(200);
  });
});

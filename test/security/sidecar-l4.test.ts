// L4 on a server sidecar's inbound mTLS listener, dialed directly and through a mesh gateway (which
// never terminates TLS): a caller without a certificate, with a self-signed one that carries the
// right SPIFFE ID, with a chain from a CA of its own, with a leaf of a service an intention denies,
// or with a leaf whose root was rotated out of the trust bundle is refused before any byte reaches
// the application, and the sidecar records why. Real `isthmus connect proxy` and `isthmus gateway`
// processes, a region in this process on 127.0.11.1.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Region } from '../../src/region/index.js';
import type { CaRoot } from '../../src/ca/index.js';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { startCli } from '../harness/server-process.js';
import { freePortOn } from '../harness/regions.js';
import { http, probe, region, rogueCa, selfSigned, until, type Identity, type ProbeResult } from './helpers.js';

const HOST = '127.0.11.1';
let r: Region;
let base = '';
let sidecarPort = 0;
let gatewayPort = 0;
let sni = '';
let apiUri = '';
const stops: (() => Promise<unknown> | void)[] = [];
/** What the application behind the sidecar has seen. */
const app = { connections: 0, bytes: 0 };

async function leaf(service: string): Promise<Identity> {
  const l = (await http(base, 'GET', `/v1/agent/connect/ca/leaf/${service}`)).body;
  return { certPem: l.CertPEM, keyPem: l.PrivateKeyPEM, chain: l.Chain };
}

const direct = (id?: Identity) => probe({ host: HOST, port: sidecarPort, id });
const viaGateway = (id?: Identity) => probe({ host: HOST, port: gatewayPort, servername: sni, id });

/** Both ways in, each refused with nothing back and nothing at the application. */
async function expectRefused(id: Identity | undefined): Promise<ProbeResult[]> {
  const before = { ...app };
  const results = [await direct(id), await viaGateway(id)];
  for (const res of results) {
    expect(res.data).toBe('');
    expect(res.closed).toBe(true);
  }
  // Give a connection that slipped through time to arrive before saying none did.
  await new Promise((res) => setTimeout(res, 200));
  expect(app).toEqual(before);
  return results;
}

async function deniedRecord(since: number, match: (f: FlowRecord) => boolean): Promise<FlowRecord> {
  const denied = async () => r.flows.query({ hop: 'server-sidecar', verdict: 'denied', since });
  return until("the sidecar's denied flow record", async () => (await denied()).find(match), 10_000).catch(async (err: Error) => {
    throw new Error(`${err.message}; denied since then: ${JSON.stringify((await denied()).map((f) => f.reason))}`);
  });
}

beforeAll(async () => {
  r = await region('dc1', HOST);
  stops.push(() => r.stop());
  base = `http://${r.httpAddress}`;
  sni = `api.default.dc1.internal.${r.trustDomain}`;
  apiUri = `spiffe://${r.trustDomain}/ns/default/dc/dc1/svc/api`;

  const echo = net.createServer((s) => {
    app.connections++;
    s.on('data', (d) => {
      app.bytes += d.length;
      s.write(`api:${d}`);
    });
    s.on('error', () => {});
  });
  await new Promise<void>((res) => echo.listen(0, HOST, res));
  stops.push(() => new Promise<void>((res) => echo.close(() => res())));
  sidecarPort = await freePortOn(HOST);
  const reg = await http(base, 'PUT', '/v1/agent/service/register', {
    Name: 'api',
    Address: HOST,
    Port: (echo.address() as net.AddressInfo).port,
    Connect: { SidecarService: { Address: HOST, Port: sidecarPort, Proxy: { LocalServiceAddress: HOST } } },
  });
  expect(reg.status).toBe(200);
  // db may not call api; the intention is in place before the sidecar starts.
  expect((await http(base, 'PUT', '/v1/connect/intentions/exact?source=db&destination=api', { Action: 'deny' })).status).toBe(200);

  const env = { ISTHMUS_HTTP_ADDR: r.httpAddress };
  const [sidecar, gw] = await Promise.all([
    startCli(['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', r.grpcAddress], /Sidecar for api/, env),
    (async () => {
      gatewayPort = await freePortOn(HOST);
      return startCli(
        [
          'gateway',
          '--dc',
          'dc1',
          '--id',
          'security-gw',
          '--addr',
          `${HOST}:${gatewayPort}`,
          '--wan-addr',
          `${HOST}:${gatewayPort}`,
          '--server',
          r.grpcAddress,
        ],
        /Mesh gateway security-gw/,
      );
    })(),
  ]);
  stops.push(
    () => sidecar.stop(),
    () => gw.stop(),
  );
  await until("the gateway's routes", () => gw.output().includes('"routes received"'), 15_000);
  // The gateway has api's sidecar as a target once it is registered and passing.
  await until('a valid caller through the gateway', async () => (await viaGateway(await leaf('web'))).data === 'api:ping', 15_000);
}, 60_000);

afterAll(async () => {
  while (stops.length) await stops.pop()!();
});

describe("a server sidecar's inbound mTLS listener, directly and through a mesh gateway", () => {
  it('carries an allowed caller with a valid leaf to the application (the probe works)', async () => {
    const web = await leaf('web');
    const before = app.connections;
    expect(await direct(web)).toMatchObject({ handshake: true, data: 'api:ping' });
    expect(await viaGateway(web)).toMatchObject({ handshake: true, data: 'api:ping' });
    expect(app.connections).toBe(before + 2);
  });

  it('refuses a caller without a client certificate', async () => {
    const since = Date.now();
    await expectRefused(undefined);
    const rec = await deniedRecord(since, (f) => /no client certificate/.test(f.reason));
    expect(rec).toMatchObject({ destination: { spiffeId: apiUri, service: 'api' }, source: { service: '' }, intentionId: '' });
  });

  it('refuses a self-signed certificate that carries the right SPIFFE ID', async () => {
    const since = Date.now();
    await expectRefused(await selfSigned(`spiffe://${r.trustDomain}/ns/default/dc/dc1/svc/web`));
    await deniedRecord(since, (f) => /TLS handshake refused/.test(f.reason) && /trusted root|self.signed/i.test(f.reason));
  });

  it('refuses a chain from a CA of the same trust domain, named like the real root, that is not in the bundle', async () => {
    await expectRefused(await rogueCa(r.trustDomain, `spiffe://${r.trustDomain}/ns/default/dc/dc1/svc/web`));
  });

  it('refuses a valid leaf of a service that an intention denies, and the flow names the verdict and the intention', async () => {
    const id = (await http(base, 'GET', '/v1/connect/intentions/exact?source=db&destination=api')).body.ID as string;
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const since = Date.now();
    const [d, g] = await expectRefused(await leaf('db'));
    // The handshake itself succeeded: the refusal is the intention's, not the certificate's.
    expect(d.handshake && g.handshake).toBe(true);
    const rec = await deniedRecord(since, (f) => f.source.service === 'db');
    expect(rec).toMatchObject({
      verdict: 'denied',
      intentionId: id,
      intentionDc: 'dc1',
      source: { service: 'db', spiffeId: `spiffe://${r.trustDomain}/ns/default/dc/dc1/svc/db` },
      destination: { service: 'api' },
      bytesIn: 0,
    });
  });

  it('refuses a leaf signed under a root that was rotated out of the trust bundle', async () => {
    // Short leaves, as an operator would set them before a rotation they want over quickly.
    expect((await http(base, 'PUT', '/v1/connect/ca/configuration', { Provider: 'consul', Config: { LeafCertTTL: '1m' } })).status).toBe(200);
    const oldRootId = r.ca.activeRoot()!.ID;
    const old = await leaf('web');
    expect((await direct(old)).data).toBe('api:ping');

    const rotated = await http(base, 'POST', '/v1/connect/ca/rotate');
    expect(rotated.status).toBe(200);
    const newRootId = rotated.body.ActiveRootID as string;
    expect(newRootId).not.toBe(oldRootId);
    const fresh = await leaf('web');
    // Both roots are trusted until every leaf of the old one has expired: the old leaf still works,
    // and the new one once the sidecar has the new bundle.
    await until('the new root at the sidecar', async () => (await direct(fresh)).data === 'api:ping');
    const withOld = await direct(old);
    expect(withOld.data).toBe('api:ping');
    // A session ticket the old leaf earned resumes without any certificate being checked again...
    expect(withOld.session).toBeDefined();
    expect(await probe({ host: HOST, port: sidecarPort, id: old, session: withOld.session })).toMatchObject({ resumed: true, data: 'api:ping' });
    const retiring = r.store.get<CaRoot>('ca-roots', oldRootId)!;
    const retireAt = Date.parse(retiring.value.RetireAfter!);
    // The old root stays for the leaf TTL plus a margin for clocks (2 min), not for the default 72 h.
    expect(retireAt - Date.now()).toBeLessThanOrEqual(60_000 + 2 * 60_000 + 1000);

    // That time passing, without waiting three minutes: the retirement is due now.
    await r.store.commit([
      {
        op: 'put',
        table: 'ca-roots',
        key: oldRootId,
        value: { ...retiring.value, RetireAfter: new Date(Date.now() - 1000).toISOString() },
        ifIndex: retiring.modifyIndex,
      },
    ]);
    await r.ca.tick();
    expect(r.ca.roots().map((x) => x.ID)).toEqual([newRootId]);
    const roots = (await http(base, 'GET', '/v1/connect/ca/roots')).body.Roots.map((x: { ID: string }) => x.ID);
    expect(roots).toEqual([newRootId]);

    await until('the sidecar to drop the old root', async () => (await direct(old)).data === '');
    const since = Date.now();
    await expectRefused(old);
    // ...so it must not outlive the root: the new trust bundle came with new ticket keys.
    const before = { ...app };
    expect(await probe({ host: HOST, port: sidecarPort, id: old, session: withOld.session })).toMatchObject({ resumed: false, data: '', closed: true });
    expect(app).toEqual(before);
    await deniedRecord(since, (f) => /not signed by a trusted root/.test(f.reason));
    // The new leaf still goes through, both ways.
    expect((await direct(fresh)).data).toBe('api:ping');
    expect((await viaGateway(fresh)).data).toBe('api:ping');
  });
});

// Faults in a federation of three DCs, every part its own process: dc1 (primary) on 127.0.7.1 with
// two mesh gateways, dc2 on 127.0.8.1, dc3 on 127.0.9.1; the gateways' WAN sides behind test links.
// The promises proved, one case each, in order on the same federation:
//  1. kill -9 of the primary's server under a stream of writes loses no acknowledged write, and the
//     data plane keeps serving calls on its last configuration while the server is down;
//  2. a gateway killed mid-transfer: new calls fail over to the DC's other gateway, connections
//     through the dead one end (closed or reset, never hung), those through the survivor carry on;
//  3. the primary partitioned off the WAN (blackholed) for many heartbeats while it takes writes:
//     secondaries keep authorizing with their last intentions, status shows the link down and the
//     lag, and after the heal everyone converges with nothing lost;
//  4. a secondary down through two intention changes and a root rotation comes back, converges on
//     roots and intentions, and its sidecars serve certificates that verify under the new root.
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectionsTo, freePortOn, startFederation, type Federation3, type RegionProcs } from '../harness/regions.js';
import { api, runCli } from '../harness/server-process.js';
import { call, registerWithSidecar, startApp, startSidecar, stopAll, streamCall, type App, type CallResult, type Proc } from '../harness/mesh-services.js';
import { until } from '../harness/until.js';

const HOSTS = ['127.0.7.1', '127.0.8.1', '127.0.9.1'];
const [H1, , H3] = HOSTS;

interface Intention {
  ID: string;
  SourceName: string;
  DestinationName: string;
  Action?: string;
  Description: string;
  ModifyIndex: number;
}

interface PeerStatus {
  Datacenter: string;
  State: string;
  HeartbeatAgeMs: number | null;
  LastAckedIndex: number;
  ReplicationLagMs: number;
}

let fed: Federation3;
let dc1: RegionProcs;
let dc2: RegionProcs;
let dc3: RegionProcs;
const procs: Proc[] = [];
const apps: App[] = [];
/** Upstream ports: web in dc1 -> pay (dc1), api (dc2), db (dc3); web in dc3 -> api (dc2). */
const up = { pay: 0, api: 0, db: 0, api3: 0 };
let dbSidecarPort = 0;

const status = async (r: RegionProcs) =>
  (await api(r.server.url, 'GET', '/v1/federation/status')).body as { Index: number; AppliedIndex: number; Peers: PeerStatus[] };
const intentions = async (r: RegionProcs) => (await api(r.server.url, 'GET', '/v1/connect/intentions')).body as Intention[];
const byId = (list: Intention[]) =>
  [...list]
    .map((i) => ({ ID: i.ID, SourceName: i.SourceName, DestinationName: i.DestinationName, Action: i.Action, Description: i.Description }))
    .sort((a, b) => a.ID.localeCompare(b.ID));
const peer = (s: { Peers: PeerStatus[] }, dc: string) => s.Peers.find((p) => p.Datacenter === dc)!;
const allUp = async (r: RegionProcs) => (await status(r)).Peers.every((p) => p.State === 'up');

/** Calls in a loop until stopped; each result stamped with when it started. */
function callLoop(host: string, port: number) {
  const results: (CallResult & { at: number })[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const at = Date.now();
      results.push({ ...(await call(host, port, '/', 3000)), at });
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    results,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/** Whether what the sidecar on host:port serves verifies under `trust` alone (asked with a leaf of `from`). */
async function servedChain(from: RegionProcs, host: string, port: number, trust: string[]): Promise<{ authorized: boolean; error?: string; serial: string }> {
  const leaf = (await api(from.server.url, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
  return new Promise((resolve) => {
    const s = tls.connect(
      {
        host,
        port,
        key: leaf.PrivateKeyPEM,
        cert: [leaf.CertPEM.trim(), ...leaf.Chain.map((c: string) => c.trim())].join('\n') + '\n',
        ca: trust,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
        checkServerIdentity: () => undefined,
      },
      () => {
        resolve({
          authorized: s.authorized,
          error: s.authorizationError ? String(s.authorizationError) : undefined,
          serial: s.getPeerCertificate().serialNumber,
        });
        s.destroy();
      },
    );
    s.on('error', (e) => resolve({ authorized: false, error: e.message, serial: '' }));
  });
}

beforeAll(async () => {
  fed = await startFederation(['dc1', 'dc2', 'dc3'], { hosts: HOSTS, gatewaysPerDc: { dc1: 2 } });
  ({ dc1, dc2, dc3 } = fed.dcs);
  const pay = await startApp(dc1.host, 'pay in dc1\n');
  const apiApp = await startApp(dc2.host, 'api in dc2\n');
  const db = await startApp(dc3.host, 'db in dc3\n');
  apps.push(pay, apiApp, db);
  await registerWithSidecar(dc1.server.url, dc1.host, 'pay', { app: pay });
  await registerWithSidecar(dc2.server.url, dc2.host, 'api', { app: apiApp });
  dbSidecarPort = await registerWithSidecar(dc3.server.url, dc3.host, 'db', { app: db });
  up.pay = await freePortOn(H1);
  up.api = await freePortOn(H1);
  up.db = await freePortOn(H1);
  up.api3 = await freePortOn(H3);
  await registerWithSidecar(dc1.server.url, dc1.host, 'web', {
    upstreams: [
      { name: 'pay', port: up.pay },
      { name: 'api', dc: 'dc2', port: up.api },
      { name: 'db', dc: 'dc3', port: up.db },
    ],
  });
  await registerWithSidecar(dc3.server.url, dc3.host, 'web', { upstreams: [{ name: 'api', dc: 'dc2', port: up.api3 }] });
  const started = await Promise.all([
    startSidecar('pay', dc1.server.grpc),
    startSidecar('api', dc2.server.grpc),
    startSidecar('db', dc3.server.grpc),
    startSidecar('web', dc1.server.grpc),
    startSidecar('web', dc3.server.grpc),
  ]);
  procs.push(...started);
  for (const [host, port, want] of [
    [H1, up.pay, 'pay in dc1\n'],
    [H1, up.api, 'api in dc2\n'],
    [H1, up.db, 'db in dc3\n'],
    [H3, up.api3, 'api in dc2\n'],
  ] as const) {
    await until(`${want.trim()} reachable through ${host}:${port}`, async () => (await call(host, port)).body === want, 30_000);
  }
}, 150_000);

afterAll(async () => {
  await stopAll(procs);
  for (const a of apps) a.close();
  await fed?.stop();
});

describe('fault tolerance of a three-DC federation', () => {
  it('1. kill -9 of the primary server under writes loses no acknowledged write; sidecars and gateways keep serving meanwhile', async () => {
    const acked: { source: string; description: string }[] = [];
    const ackedNodes: string[] = [];
    let writing = true;
    let n = 0;
    // Four writers: replicated writes (intentions) and local ones (catalog) interleaved.
    const writers = Array.from({ length: 4 }, (_, w) =>
      (async () => {
        while (writing) {
          const i = n++;
          try {
            if (w % 2 === 0) {
              const source = `k1-${i}`;
              const description = `write ${i}`;
              const r = await api(dc1.server.url, 'PUT', `/v1/connect/intentions/exact?source=${source}&destination=pay`, {
                Action: 'allow',
                Description: description,
              });
              if (r.status === 200) acked.push({ source, description });
            } else {
              const node = `k1-node-${i}`;
              const r = await api(dc1.server.url, 'PUT', '/v1/catalog/register', {
                Node: node,
                Address: '10.1.0.1',
                Service: { Service: 'k1-ext', ID: `k1-ext-${i}`, Port: 80 },
              });
              if (r.status === 200) ackedNodes.push(node);
            }
          } catch {
            // Refused while the server is down: not acknowledged, so nothing is promised.
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      })(),
    );
    const local = callLoop(H1, up.pay);
    const remote = callLoop(H1, up.api);
    await until('20 acknowledged writes', () => acked.length + ackedNodes.length >= 20, 20_000, 20);
    const killedAt = Date.now();
    await dc1.server.kill9();
    const ackedAtKill = acked.length + ackedNodes.length;
    // Down long enough for the data plane to notice: several calls on each path while it is gone.
    const downCalls = () => [...local.results, ...remote.results].filter((r) => r.at > killedAt).length;
    await until('calls while the server is down', () => downCalls() >= 10, 15_000, 20);
    const restartAt = Date.now();
    await dc1.restart();
    const upAt = Date.now();
    await until('writes acknowledged again after the restart', () => acked.length + ackedNodes.length >= ackedAtKill + 10, 20_000, 20);
    writing = false;
    await Promise.all(writers);
    await local.stop();
    await remote.stop();

    // Every acknowledged write is there after the restart, with what was written.
    const afterRestart = await intentions(dc1);
    const seen = new Map(afterRestart.map((i) => [i.SourceName, i]));
    const lost = acked.filter((a) => seen.get(a.source)?.Description !== a.description);
    expect(lost).toEqual([]);
    const nodes = ((await api(dc1.server.url, 'GET', '/v1/catalog/nodes')).body as { Node: string }[]).map((x) => x.Node);
    expect(ackedNodes.filter((x) => !nodes.includes(x))).toEqual([]);
    expect(acked.length).toBeGreaterThan(5);
    expect(ackedNodes.length).toBeGreaterThan(5);

    // The data plane carried on while the server was gone: local and cross-DC calls all answered.
    const during = [...local.results, ...remote.results].filter((r) => r.at > killedAt && r.at + r.ms < upAt);
    expect(during.length).toBeGreaterThanOrEqual(10);
    expect(during.filter((r) => !r.ok)).toEqual([]);
    expect([...local.results, ...remote.results].filter((r) => !r.ok)).toEqual([]);
    console.log(
      `kill -9 of dc1's server: ${acked.length + ackedNodes.length} writes acknowledged, down ${upAt - killedAt} ms (restart took ${upAt - restartAt} ms), ${during.length} calls answered meanwhile`,
    );

    // The secondaries hold every acknowledged intention too, once replication resumed.
    for (const r of [dc2, dc3]) {
      await until(
        `${r.dc} has every acknowledged intention`,
        async () => {
          const there = new Map((await intentions(r)).map((i) => [i.SourceName, i.Description]));
          return acked.every((a) => there.get(a.source) === a.description);
        },
        30_000,
      );
    }
  }, 90_000);

  it("2. a gateway killed mid-transfer: new calls fail over, its connections end, the survivor's carry on", async () => {
    const [gwA, gwB] = dc1.gateways;
    // Long downloads from api (dc2): web's sidecar spreads them over dc1's two gateways; which one
    // carries a download is read off the established connections to each gateway's port.
    const streams: { s: ReturnType<typeof streamCall>; via: number }[] = [];
    for (let i = 0; i < 16 && !(streams.filter((x) => x.via === 0).length >= 2 && streams.filter((x) => x.via === 1).length >= 2); i++) {
      const before = [connectionsTo(gwA.lan), connectionsTo(gwB.lan)];
      const s = streamCall(H1, up.api, 60, 100);
      await s.first;
      const grew = [connectionsTo(gwA.lan) - before[0], connectionsTo(gwB.lan) - before[1]];
      // Another connection came or went meanwhile (a federation stream redialing): not this one's to tell.
      if (grew[0] + grew[1] !== 1 || Math.min(...grew) < 0) {
        s.abort();
        continue;
      }
      streams.push({ s, via: grew[0] === 1 ? 0 : 1 });
    }
    const viaDead = streams.filter((x) => x.via === 0);
    const viaLive = streams.filter((x) => x.via === 1);
    expect(viaDead.length).toBeGreaterThanOrEqual(2);
    expect(viaLive.length).toBeGreaterThanOrEqual(2);

    const killedAt = Date.now();
    await gwA.kill9();
    // New calls right after the kill: every one answered, through the surviving gateway.
    const fresh: CallResult[] = [];
    for (let i = 0; i < 10; i++) fresh.push(await call(H1, up.api, '/', 5000));
    expect(fresh.filter((r) => !r.ok)).toEqual([]);

    // Connections through the dead gateway end, cleanly and soon; none hangs.
    const deadEnds = await Promise.all(viaDead.map((x) => Promise.race([x.s.done, new Promise<null>((r) => setTimeout(() => r(null), 15_000))])));
    expect(deadEnds.every((e) => e !== null)).toBe(true);
    for (const e of deadEnds) {
      expect(e!.complete).toBe(false);
      expect(e!.endedAt - killedAt).toBeLessThan(5_000);
    }
    // Those through the survivor deliver every line, in order, and end normally.
    const liveEnds = await Promise.all(viaLive.map((x) => x.s.done));
    expect(liveEnds.map((e) => e.complete)).toEqual(viaLive.map(() => true));
    // The federation streams that came in through the dead gateway found the survivor.
    await until('every link up again', async () => (await allUp(dc1)) && (await allUp(dc2)) && (await allUp(dc3)), 30_000);
    console.log(
      `gateway kill -9: ${viaDead.length} connections through it ended within ${Math.max(...deadEnds.map((e) => e!.endedAt - killedAt))} ms, ${viaLive.length} through the survivor completed, 10/10 new calls answered`,
    );
  }, 60_000);

  it('3. the primary partitioned off the WAN: secondaries keep authorizing, status shows it, all converge after the heal', async () => {
    const primaryLinks = dc1.gateways.map((g) => g.link);
    // Before: web may call api (nothing denies it), and the secondaries have caught up.
    expect((await call(H3, up.api3)).ok).toBe(true);
    const before = (await intentions(dc1)).filter((i) => i.SourceName.startsWith('k1-')).slice(0, 2);
    for (const l of primaryLinks) l.blackhole();
    const cutAt = Date.now();
    // Both sides see the link go: the secondaries lose the primary, the primary loses them.
    await until(
      'dc2 and dc3 see the primary gone',
      async () => peer(await status(dc2), 'dc1').State !== 'up' && peer(await status(dc3), 'dc1').State !== 'up',
      20_000,
    );
    await until('dc1 sees dc2 and dc3 gone', async () => (await status(dc1)).Peers.every((p) => p.State !== 'up'), 20_000);

    // Writes at the primary during the partition: a deny for web -> api, a create, an update, a delete.
    const w = [
      await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', {
        Action: 'deny',
        Description: 'written during the partition',
      }),
      await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=p3-a&destination=api', { Action: 'allow', Description: 'first' }),
      await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=p3-a&destination=api', { Action: 'allow', Description: 'second' }),
      await api(dc1.server.url, 'DELETE', `/v1/connect/intentions/exact?source=${before[0].SourceName}&destination=pay`),
    ];
    expect(w.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    // A replicated write at a secondary cannot reach the primary: 503 naming why, nothing applied.
    const refused = await api(dc2.server.url, 'PUT', '/v1/connect/intentions/exact?source=p3-b&destination=api', { Action: 'deny' });
    expect(refused.status).toBe(503);
    expect(refused.body.Error).toBe('ISTHMUS_ERR_PRIMARY_UNREACHABLE');

    // Longer than many heartbeats (500 ms each): dc3's web still reaches dc2's api, authorized by
    // dc2's last replicated intentions, and the API agrees.
    const wroteAt = Date.now();
    let calls = 0;
    while (Date.now() - wroteAt < 3000 || calls < 10) {
      const r = await call(H3, up.api3);
      expect(r).toMatchObject({ ok: true, body: 'api in dc2\n' });
      calls++;
    }
    expect((await api(dc2.server.url, 'GET', '/v1/connect/intentions/check?source=web&destination=api')).body).toEqual({ Allowed: true });
    const authz = await api(dc2.server.url, 'POST', '/v1/agent/connect/authorize', {
      Target: 'api',
      ClientCertURI: `spiffe://${(await api(dc2.server.url, 'GET', '/v1/connect/ca/roots')).body.TrustDomain}/ns/default/dc/dc3/svc/web`,
    });
    expect(authz.body.Authorized).toBe(true);

    // Status tells the truth: links down, heartbeats old, and the primary shows what is not acknowledged.
    const s1 = await status(dc1);
    for (const dc of ['dc2', 'dc3']) {
      const p = peer(s1, dc);
      expect(p.State).not.toBe('up');
      expect(p.LastAckedIndex).toBeLessThan(s1.AppliedIndex);
      expect(p.ReplicationLagMs).toBeGreaterThan(1000);
    }
    for (const r of [dc2, dc3]) {
      const s = await status(r);
      const p = peer(s, 'dc1');
      expect(p.State).not.toBe('up');
      expect(p.HeartbeatAgeMs === null || p.HeartbeatAgeMs > 1500).toBe(true);
    }
    // The primary's receipts for what it took during the partition: applied at home only.
    const during = await api(dc1.server.url, 'GET', '/v1/connect/intentions');
    const r = (await api(dc1.server.url, 'GET', `/v1/federation/receipts?index=${during.headers.get('x-consul-index')}`)).body;
    expect(r.Complete).toBe(false);
    expect(r.Datacenters.map((d: { Datacenter: string; Applied: boolean }) => [d.Datacenter, d.Applied])).toEqual([
      ['dc1', true],
      ['dc2', false],
      ['dc3', false],
    ]);
    const metrics = await (await fetch(`${dc1.server.url}/metrics`)).text();
    expect(metrics).toMatch(/isthmus_federation_link_up\{[^}]*peer="dc2"[^}]*\} 0/);

    for (const l of primaryLinks) l.heal();
    const healedAt = Date.now();
    await until('every link up again', async () => (await allUp(dc1)) && (await allUp(dc2)) && (await allUp(dc3)), 30_000);
    // Converged: the primary holds a receipt from every DC for its last intention write, nothing is
    // left unacknowledged, and every DC lists the same intentions.
    const last = await api(dc1.server.url, 'GET', '/v1/connect/intentions');
    const index = Number(last.headers.get('x-consul-index'));
    const receipts = await until(
      'receipts from every DC',
      async () => {
        const r = (await api(dc1.server.url, 'GET', `/v1/federation/receipts?index=${index}`)).body;
        return r.Complete ? r : undefined;
      },
      30_000,
    );
    expect(receipts.Datacenters.map((d: { Datacenter: string; Applied: boolean }) => [d.Datacenter, d.Applied])).toEqual([
      ['dc1', true],
      ['dc2', true],
      ['dc3', true],
    ]);
    const want = byId(last.body);
    for (const r of [dc2, dc3]) expect(byId(await intentions(r))).toEqual(want);
    await until('no lag left at the primary', async () => (await status(dc1)).Peers.every((p) => p.State === 'up' && p.ReplicationLagMs === 0), 10_000);
    expect(want.find((i) => i.SourceName === 'p3-a')?.Description).toBe('second');
    expect(want.some((i) => i.SourceName === before[0].SourceName)).toBe(false);
    expect(want.some((i) => i.SourceName === 'p3-b')).toBe(false);
    // The deny written during the partition is now enforced by dc2's sidecar.
    await until('web -> api denied in dc2', async () => !(await call(H3, up.api3)).ok, 20_000);
    console.log(
      `partition of the primary: ${healedAt - cutAt} ms blackholed, ${calls} calls authorized meanwhile, converged ${Date.now() - healedAt} ms after the heal`,
    );
    expect((await api(dc1.server.url, 'DELETE', '/v1/connect/intentions/exact?source=web&destination=api')).status).toBe(200);
  }, 90_000);

  it('4. a secondary down through two intention changes and a root rotation converges, and its sidecars serve certs under the new root', async () => {
    // Something for the secondary to forget while it is down.
    expect((await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=audit&destination=db', { Action: 'allow' })).status).toBe(200);
    await until(
      'dc3 has audit -> db',
      async () => (await api(dc3.server.url, 'GET', '/v1/connect/intentions/exact?source=audit&destination=db')).status === 200,
    );
    await until('web -> db answers', async () => (await call(H1, up.db)).ok);
    const oldRoots = (await api(dc1.server.url, 'GET', '/v1/connect/ca/roots')).body;

    await dc3.server.kill9();
    const c1 = await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=db', {
      Action: 'deny',
      Description: 'while dc3 was down',
    });
    const c2 = await api(dc1.server.url, 'DELETE', '/v1/connect/intentions/exact?source=audit&destination=db');
    expect([c1.status, c2.status]).toEqual([200, 200]);
    const rotated = await runCli(['ca', 'rotate', '--http-addr', dc1.server.http]);
    expect(rotated.code).toBe(0);
    const roots = (await api(dc1.server.url, 'GET', '/v1/connect/ca/roots')).body;
    expect(roots.ActiveRootID).not.toBe(oldRoots.ActiveRootID);
    const newRoot = roots.Roots.find((r: { Active: boolean }) => r.Active).RootCert as string;
    // dc3's data plane carries on meanwhile, on what it had: its sidecar still lets web in.
    expect((await call(H1, up.db)).ok).toBe(true);

    const downAt = Date.now();
    await dc3.restart();
    await until('dc3 linked again', () => allUp(dc3), 30_000);
    // Roots and intentions: the same as the primary's.
    await until(
      'dc3 has the new roots',
      async () => (await api(dc3.server.url, 'GET', '/v1/connect/ca/roots')).body.ActiveRootID === roots.ActiveRootID,
      30_000,
    );
    const roots3 = (await api(dc3.server.url, 'GET', '/v1/connect/ca/roots')).body;
    expect(roots3.Roots.map((r: { ID: string; Active: boolean }) => [r.ID, r.Active]).sort()).toEqual(
      roots.Roots.map((r: { ID: string; Active: boolean }) => [r.ID, r.Active]).sort(),
    );
    await until('dc3 intentions converged', async () => JSON.stringify(byId(await intentions(dc3))) === JSON.stringify(byId(await intentions(dc1))), 30_000);
    expect((await api(dc3.server.url, 'GET', '/v1/connect/intentions/exact?source=audit&destination=db')).status).toBe(404);
    // dc3 signs with an intermediate under the new root, and its sidecar serves such a leaf.
    await until(
      'a dc3 leaf verifies under the new root alone',
      async () => {
        const leaf = (await api(dc3.server.url, 'GET', '/v1/agent/connect/ca/leaf/probe')).body;
        const inter = new X509Certificate(leaf.Chain[0]);
        return new X509Certificate(leaf.CertPEM).verify(inter.publicKey) && inter.verify(new X509Certificate(newRoot).publicKey);
      },
      30_000,
    );
    const served = await until(
      "dc3's db sidecar serves a leaf that verifies under the new root alone",
      async () => {
        const r = await servedChain(dc1, dc3.host, dbSidecarPort, [newRoot]);
        return r.authorized ? r : undefined;
      },
      30_000,
    );
    expect(served.serial).not.toBe('');
    // And it enforces what changed while it was away.
    await until('web -> db refused by dc3', async () => !(await call(H1, up.db)).ok, 20_000);
    expect((await call(H3, up.api3)).ok).toBe(true);
    console.log(`secondary back: converged on roots, intentions and leaves ${Date.now() - downAt} ms after its restart began`);
  }, 90_000);
});

// Three regions as separate processes on 127.0.1.1, 127.0.2.1 and 127.0.3.1, each with its server
// and mesh gateway, the gateways' WAN sides behind test links. Calls cross regions through both
// gateways under mTLS; an intention written anywhere is enforced everywhere; the primary dies and
// comes back; a region is cut off and comes back; a gateway dies and calls fail over.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { api, runCli, startCli } from '../harness/server-process.js';
import { freePortOn, startFederation, startGateway, type Federation3 } from '../harness/regions.js';
import { until } from '../harness/until.js';

type Proc = Awaited<ReturnType<typeof startCli>>;

/** One HTTP GET through a local upstream port; resolves with the body, or the error's code. */
function call(port: number, host = '127.0.1.1'): Promise<{ ok: boolean; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host, port, path: '/', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ ok: res.statusCode === 200, body }));
      res.on('error', (e) => resolve({ ok: false, body: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, body: e.code ?? e.message }));
  });
}

async function app(host: string, text: string): Promise<http.Server> {
  const s = http.createServer((_q, r) => r.end(text));
  await new Promise<void>((r) => s.listen(0, host, r));
  return s;
}

describe('three federated regions, every part its own process', () => {
  let fed: Federation3;
  const procs: Proc[] = [];
  const apps: http.Server[] = [];
  let apiPort = 0;
  let dbPort = 0;

  beforeAll(async () => {
    fed = await startFederation();
    const { dc1, dc2, dc3 } = fed.dcs;
    // api in dc2 and db in dc3, each behind a sidecar; web in dc1 calls both across regions.
    const apiApp = await app('127.0.2.1', 'api in dc2\n');
    const dbApp = await app('127.0.3.1', 'db in dc3\n');
    apps.push(apiApp, dbApp);
    const reg = async (base: string, body: unknown) => expect((await api(base, 'PUT', '/v1/agent/service/register', body)).status).toBe(200);
    await reg(dc2.server.url, {
      Name: 'api',
      Address: '127.0.2.1',
      Port: (apiApp.address() as AddressInfo).port,
      Connect: { SidecarService: { Address: '127.0.2.1', Port: await freePortOn('127.0.2.1'), Proxy: { LocalServiceAddress: '127.0.2.1' } } },
    });
    await reg(dc3.server.url, {
      Name: 'db',
      Address: '127.0.3.1',
      Port: (dbApp.address() as AddressInfo).port,
      Connect: { SidecarService: { Address: '127.0.3.1', Port: await freePortOn('127.0.3.1'), Proxy: { LocalServiceAddress: '127.0.3.1' } } },
    });
    apiPort = await freePortOn('127.0.1.1');
    dbPort = await freePortOn('127.0.1.1');
    await reg(dc1.server.url, {
      Name: 'web',
      Port: 1,
      Connect: {
        SidecarService: {
          Address: '127.0.1.1',
          Port: await freePortOn('127.0.1.1'),
          Proxy: {
            Upstreams: [
              { DestinationName: 'api', Datacenter: 'dc2', LocalBindAddress: '127.0.1.1', LocalBindPort: apiPort },
              { DestinationName: 'db', Datacenter: 'dc3', LocalBindAddress: '127.0.1.1', LocalBindPort: dbPort },
            ],
          },
        },
      },
    });
    procs.push(await startCli(['connect', 'proxy', '--sidecar-for', 'api', '--grpc-addr', dc2.server.grpc], /Sidecar for api/));
    procs.push(await startCli(['connect', 'proxy', '--sidecar-for', 'db', '--grpc-addr', dc3.server.grpc], /Sidecar for db/));
    procs.push(await startCli(['connect', 'proxy', '--sidecar-for', 'web', '--grpc-addr', dc1.server.grpc], /Sidecar for web/));
  }, 120_000);

  afterAll(async () => {
    for (const p of procs.reverse()) await p.stop();
    for (const a of apps) {
      a.closeAllConnections();
      a.close();
    }
    await fed?.stop();
  });

  it('calls dc1 -> dc2 and dc1 -> dc3 through both gateways, with every hop recorded under one trace', async () => {
    expect((await until('api reachable from web', async () => ((await call(apiPort)).ok ? call(apiPort) : undefined))).body).toBe('api in dc2\n');
    expect((await until('db reachable from web', async () => ((await call(dbPort)).ok ? call(dbPort) : undefined))).body).toBe('db in dc3\n');
    // The four hops of one connection, recorded in two DCs, share its traceId.
    const hops = await until('all hops recorded', async () => {
      // One federated query from dc1 gathers what dc1 and dc2 recorded.
      const r = await api(fed.dcs.dc1.server.url, 'GET', '/v1/flows?to=api&dc=all');
      const recs = r.body.Records as { traceId: string; hop: string; verdict: string; dc: string }[];
      const client = recs.find((f) => f.hop === 'client-sidecar' && f.verdict === 'allowed');
      if (!client) return undefined;
      const all = recs.filter((f) => f.traceId === client.traceId).map((f) => f.hop);
      return ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'].every((h) => all.includes(h)) ? all : undefined;
    });
    expect(hops).toEqual(expect.arrayContaining(['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar']));
  });

  it('draws one trace across DCs, and follows flows of every DC live', async () => {
    const { dc1 } = fed.dcs;
    // The calls to db of the test before: a sidecar reports a connection's record once it has closed.
    const traceId = await until('an allowed call to db recorded', async () => {
      const r = await api(dc1.server.url, 'GET', '/v1/flows?to=db&dc=all&hop=client-sidecar&verdict=allowed&limit=1');
      return (r.body.Records as { traceId: string }[])[0]?.traceId;
    });
    const t = await runCli(['flows', 'trace', traceId, '--http-addr', dc1.server.http]);
    expect(t.code).toBe(0);
    const lines = t.stdout.split('\n');
    const order = ['client-sidecar', 'gateway-egress', 'gateway-ingress', 'server-sidecar'].map((h) => lines.findIndex((l) => l.includes(h)));
    expect(order.every((i) => i > 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(t.stdout).toMatch(/dc1 +client-sidecar/);
    expect(t.stdout).toMatch(/dc3 +server-sidecar/);
    // Live: a call made after the follow starts shows up, with hops from dc1 and dc3.
    const follower = await startCli(['flows', '--follow', '--dc', 'all', '--to', 'db', '--http-addr', dc1.server.http], /Following flows of every datacenter/);
    try {
      await new Promise((res) => setTimeout(res, 500));
      await call(dbPort);
      await until(
        'followed records from dc1 and dc3',
        () => / dc1 client-sidecar .*db@dc3/.test(follower.output()) && / dc3 server-sidecar /.test(follower.output()),
        15_000,
      );
    } finally {
      await follower.stop();
    }
  });

  it('replays a proposed deny against the calls seen in every DC, and suggests least-privilege intentions', async () => {
    const { dc2 } = fed.dcs;
    // Asked in dc2: the calls web -> api were recorded in dc2, web -> db in dc3.
    const dry = await runCli(['intention', 'create', '--deny', '--dry-run', '--window', '1h', 'web', 'db', '--http-addr', dc2.server.http]);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/default\/web -> default\/db connections: allowed -> DENIED \(\d+ seen, in dc3/);
    expect(dry.stdout).not.toMatch(/-> default\/api/);
    expect((await api(dc2.server.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=db')).status).toBe(404); // nothing written
    const sug = await runCli(['intention', 'suggest', '--service', 'api', '--http-addr', fed.dcs.dc1.server.http]);
    expect(sug.code).toBe(0);
    expect(sug.stdout).toMatch(/web => api: allow \(L4\)\s+\(\d+ calls in dc2\)/);
  });

  it('records an unknown SNI at the gateway as no_route', async () => {
    const gw = fed.dcs.dc2.gateways[0];
    const [host, port] = [gw.lan.split(':')[0], Number(gw.lan.split(':')[1])];
    await new Promise<void>((resolve) => {
      const s = tls.connect({ host, port, servername: 'nothing.default.dc9.internal.example.isthmus', rejectUnauthorized: false });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    const flows = await until('no_route flow', async () => {
      const r = await api(fed.dcs.dc2.server.url, 'GET', '/v1/flows?verdict=no_route');
      return (r.body.Records as { sni: string }[]).find((f) => f.sni === 'nothing.default.dc9.internal.example.isthmus');
    });
    expect(flows).toBeTruthy();
  });

  it('a deny written in dc2 is forwarded to dc1 and enforced for a call into dc3, within a measured time', async () => {
    const started = Date.now();
    const w = await runCli(['intention', 'create', '--deny', '--wait', 'all', 'web', 'db', '--http-addr', fed.dcs.dc2.server.http]);
    expect(w.stdout).toMatch(/Created: web => db \(deny\)/);
    expect(w.stdout).toMatch(/enforced in dc3/);
    expect(w.code).toBe(0);
    await until('db refused for web', async () => !(await call(dbPort)).ok);
    const enforcedMs = Date.now() - started;
    console.log(`write in dc2 -> enforced for dc1->dc3 calls: ${enforcedMs} ms`);
    expect((await call(apiPort)).ok).toBe(true);
    // The denial names the intention and where it was written.
    const denied = await until('denied flow in dc3', async () => {
      const r = await api(fed.dcs.dc3.server.url, 'GET', '/v1/flows?verdict=denied&to=db');
      return (r.body.Records as { intentionId: string; intentionDc: string }[])[0];
    });
    expect(denied.intentionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(denied.intentionDc).toBe('dc1'); // written at the primary, wherever the request came in
  });

  it('with the primary down, dc2 and dc3 keep authorizing, reading and signing; writes answer 503; all converge when it is back', async () => {
    const { dc1, dc2, dc3 } = fed.dcs;
    await dc1.server.kill9();
    const w = await api(dc2.server.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', { Action: 'deny' });
    expect(w.status).toBe(503);
    expect(w.body.Error).toBe('ISTHMUS_ERR_PRIMARY_UNREACHABLE');
    expect((await api(dc3.server.url, 'GET', '/v1/connect/intentions/check?source=web&destination=db')).body.Allowed).toBe(false);
    expect((await api(dc2.server.url, 'GET', '/v1/catalog/service/api')).body.length).toBe(1);
    expect((await api(dc3.server.url, 'GET', '/v1/agent/connect/ca/leaf/newsvc')).status).toBe(200);
    // The data plane keeps working on what it has: dc1's sidecar and gateway still carry web -> api.
    expect((await call(apiPort)).ok).toBe(true);
    await dc1.restart();
    await until(
      'primary back and linked',
      async () => (await api(dc1.server.url, 'GET', '/v1/federation/status')).body?.Peers?.every((p: { State: string }) => p.State === 'up'),
      30_000,
    );
    const again = await api(dc2.server.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=api', {
      Action: 'allow',
      Description: 'after the primary came back',
    });
    expect(again.status).toBe(200);
    await until(
      'dc3 has it',
      async () =>
        (await api(dc3.server.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=api')).body?.Description === 'after the primary came back',
    );
    expect((await api(dc1.server.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=db')).body.Action).toBe('deny');
  });

  it('regions cut off by a WAN outage catch up once it heals', async () => {
    const { dc1, dc3 } = fed.dcs;
    // Every WAN side goes silent (the in-process federation test cuts one DC alone).
    const links = Object.values(fed.dcs).flatMap((d) => d.gateways.map((g) => g.link));
    for (const l of links) l.blackhole();
    await until(
      'dc1 sees dc3 gone',
      async () =>
        (await api(dc1.server.url, 'GET', '/v1/federation/status')).body.Peers.find((p: { Datacenter: string }) => p.Datacenter === 'dc3').State !== 'up',
      20_000,
    );
    await api(dc1.server.url, 'PUT', '/v1/connect/intentions/exact?source=web&destination=cache', { Action: 'deny' });
    await new Promise((r) => setTimeout(r, 500));
    expect((await api(dc3.server.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=cache')).status).toBe(404);
    for (const l of links) l.heal();
    await until(
      'dc3 caught up',
      async () => (await api(dc3.server.url, 'GET', '/v1/connect/intentions/exact?source=web&destination=cache')).status === 200,
      30_000,
    );
  });

  it('calls fail over when one of two gateways of a DC dies', async () => {
    const { dc2 } = fed.dcs;
    const second = await startGateway('dc2', dc2.host, dc2.server.grpc, 2);
    dc2.gateways.push(second);
    await until('second gateway known in dc1', async () => {
      const r = await api(fed.dcs.dc1.server.url, 'GET', '/v1/federation/status');
      return r.body && (await api(fed.dcs.dc2.server.url, 'GET', '/v1/health/service/mesh-gateway?passing')).body.length === 2;
    });
    await new Promise((r) => setTimeout(r, 1000));
    await dc2.gateways[0].kill9();
    let ok = 0;
    for (let i = 0; i < 10; i++) if ((await call(apiPort)).ok) ok++;
    // Connections in flight at the kill may fail; new ones go to the survivor.
    await until('calls succeed through the second gateway', async () => (await call(apiPort)).ok);
    expect(ok).toBeGreaterThanOrEqual(5);
  });

  it('federation remove, asked at a secondary, is answered by the primary and refuses what it must', async () => {
    const at = fed.dcs.dc2.server.http;
    // (The test before killed the gateway dc2's link to the primary may have gone through.)
    await until('dc2 linked to the primary again', async () => {
      const st = await api(fed.dcs.dc2.server.url, 'GET', '/v1/federation/status');
      return st.body?.Peers?.some((p: { Datacenter: string; State: string }) => p.Datacenter === 'dc1' && p.State === 'up');
    });
    const unknown = await runCli(['federation', 'remove', 'dc9', '--http-addr', at]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toMatch(/dc9 is not a member of this federation \(members: dc1, dc2, dc3\)/);
    const primary = await runCli(['federation', 'remove', 'dc1', '--http-addr', at]);
    expect(primary.code).toBe(1);
    expect(primary.stderr).toMatch(/primary itself/);
    const status = await api(fed.dcs.dc1.server.url, 'GET', '/v1/federation/status');
    expect(status.body.Peers.map((p: { Datacenter: string }) => p.Datacenter).sort()).toEqual(['dc2', 'dc3']);
  });
});

void net;

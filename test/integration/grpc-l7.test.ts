// gRPC routed per call across two DCs, every part its own process: a grpc-js client in dc1 calls
// "grpc-api" through web's `isthmus connect proxy` upstream listener, on ONE channel (one h2c
// connection), through dc1's and dc2's gateways, to two instances in dc2 (subsets v1 and v2, each an
// app with its own server sidecar). A service-router written at the primary sends the Count method to
// v2 and the rest to v1, call by call on that channel; a route retries Say on `unavailable`, and the
// flow record says how often; a 90/10 service-splitter then divides 500 unary calls of one channel.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putOk as put, registerGrpcWeb, startSidecar, stopAll, type Proc } from '../harness/mesh-services.js';
import { freePortOn, startFederation, type Federation3 } from '../harness/regions.js';
import { api, startCli } from '../harness/server-process.js';
import { until } from '../harness/until.js';
import { ECHO_SERVICE, echoClient, grpc, startEchoApp, type EchoApp, type EchoClient } from '../../src/sidecar/testing/grpc-echo.js';

const HOSTS = ['127.0.43.1', '127.0.44.1'];
const SPLIT_CALLS = 500;

let fed: Federation3;
const apps: Record<'v1' | 'v2', EchoApp> = {} as Record<'v1' | 'v2', EchoApp>;
let client: EchoClient;
const procs: Proc[] = [];

type Unary = { text?: string; code: number; details?: string };
function unary(method: 'say' | 'denied', text: string, md: Record<string, string> = {}): Promise<Unary> {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) m.set(k, v);
  return new Promise((resolve) => {
    client[method]({ text }, m, (err, r) => resolve(err ? { code: err.code, details: err.details } : { text: r?.text, code: grpc.status.OK }));
  });
}

function count(n: number): Promise<{ code: number; got: string[] }> {
  return new Promise((resolve) => {
    const got: string[] = [];
    const call = client.count({ n });
    call.on('data', (m: { text: string }) => got.push(m.text));
    call.on('error', () => {});
    call.on('status', (s) => resolve({ code: s.code, got }));
  });
}

interface Rec {
  hop: string;
  verdict: string;
  requestIndex: number;
  http?: { path: string; status: number };
  routing?: { target: string; route: string; split: string; retries: number; failover: string };
  reason: string;
}

/** web's per-call records in dc1, as its sidecar sent them. */
async function webCalls(): Promise<Rec[]> {
  const all = (await api(fed.dcs.dc1.server.url, 'GET', '/v1/flows?from=web&limit=2000')).body.Records as Rec[];
  return all.filter((r) => r.hop === 'client-sidecar' && r.requestIndex > 0);
}

beforeAll(async () => {
  fed = await startFederation(['dc1', 'dc2'], { hosts: HOSTS });
  const [dc1, dc2] = [fed.dcs.dc1, fed.dcs.dc2];
  // Written at the primary, replicated to dc2: the protocol, the subsets and the router.
  await put(dc1.server.url, '/v1/config', { Kind: 'service-defaults', Name: 'grpc-api', Protocol: 'grpc' });
  await put(dc1.server.url, '/v1/config', {
    Kind: 'service-resolver',
    Name: 'grpc-api',
    DefaultSubset: 'v1',
    Subsets: { v1: { Filter: 'Service.Meta.version == v1' }, v2: { Filter: 'Service.Meta.version == v2' } },
  });
  await put(dc1.server.url, '/v1/config', {
    Kind: 'service-router',
    Name: 'grpc-api',
    Routes: [
      { Match: { HTTP: { PathExact: `/${ECHO_SERVICE}/Count` } }, Destination: { ServiceSubset: 'v2' } },
      {
        Match: { HTTP: { PathPrefix: `/${ECHO_SERVICE}/`, Header: [{ Name: 'x-retry', Present: true }] } },
        Destination: { ServiceSubset: 'v1', NumRetries: 3, RetryOn: ['unavailable'] },
      },
    ],
  });
  for (const v of ['v1', 'v2'] as const) {
    apps[v] = await startEchoApp(dc2.host);
    const sidecarPort = await freePortOn(dc2.host);
    await put(dc2.server.url, '/v1/agent/service/register', {
      ID: `grpc-api-${v}`,
      Name: 'grpc-api',
      Address: dc2.host,
      Port: apps[v].port,
      Meta: { version: v },
      Connect: {
        SidecarService: { Address: dc2.host, Port: sidecarPort, Proxy: { LocalServiceAddress: dc2.host, Config: { protocol: 'grpc' } } },
      },
    });
    procs.push(
      await startCli(
        ['connect', 'proxy', '--sidecar-for', `grpc-api-${v}`, '--grpc-addr', dc2.server.grpc, '--log-level', 'warn'],
        new RegExp(`Sidecar for grpc-api \\(grpc-api-${v}-`),
        dc2.env,
      ),
    );
  }
  const upstreamPort = await registerGrpcWeb(dc1.server.url, dc1.host, ECHO_SERVICE);
  procs.push(await startSidecar('web', dc1.server.grpc, dc1.env));
  client = echoClient(dc1.host, upstreamPort);
  // Until the intention has reached dc2 and web's upstream has both subsets' endpoints.
  await until(
    'a unary call answered by v1 and a streaming call by v2',
    async () => {
      const [s, c] = [await unary('say', 'warm-up'), await count(1)];
      return s.code === grpc.status.OK && c.code === grpc.status.OK ? true : undefined;
    },
    90_000,
  );
}, 240_000);

afterAll(async () => {
  client?.close();
  await stopAll(procs);
  for (const a of Object.values(apps)) await a.close();
  await fed?.stop();
});

describe('gRPC routed per call across two DCs', () => {
  it('sends Count to subset v2 and Say to v1, call by call on one channel', async () => {
    const before = { v1: apps.v1.traceparents.length, v2: apps.v2.traceparents.length };
    for (let i = 0; i < 10; i++) {
      expect(await unary('say', `s${i}`)).toEqual({ text: `said s${i}`, code: grpc.status.OK });
      expect(await count(2)).toEqual({ code: grpc.status.OK, got: ['0', '1'] });
    }
    // Each app records the calls it answered: Say and Count alike push a traceparent.
    expect(apps.v1.traceparents.length - before.v1).toBe(10);
    expect(apps.v2.traceparents.length - before.v2).toBe(10);
    const recs = await until(
      "web's records of the interleaved calls",
      async () => {
        const r = (await webCalls()).filter((x) => x.verdict === 'allowed');
        return r.filter((x) => x.http?.path === `/${ECHO_SERVICE}/Count`).length >= 10 ? r : undefined;
      },
      30_000,
    );
    const counts = recs.filter((x) => x.http?.path === `/${ECHO_SERVICE}/Count`);
    const says = recs.filter((x) => x.http?.path === `/${ECHO_SERVICE}/Say`);
    expect(counts.every((x) => x.routing?.route === 'Routes[0]' && x.routing.target === 'v2.grpc-api.default.dc2')).toBe(true);
    expect(says.every((x) => x.routing?.target === 'v1.grpc-api.default.dc2')).toBe(true);
  });

  it('streams a server-streaming call from v2 to the end', async () => {
    expect(await count(50)).toEqual({ code: grpc.status.OK, got: Array.from({ length: 50 }, (_, i) => String(i)) });
  });

  it('retries a call v1 answers UNAVAILABLE, as the route says, and the record counts the retries', async () => {
    apps.v1.failNext = 2;
    expect(await unary('say', 'retried', { 'x-retry': '1' })).toEqual({ text: 'said retried', code: grpc.status.OK });
    expect(apps.v1.failNext).toBe(0);
    const rec = await until(
      'the record of the retried call',
      async () => (await webCalls()).find((x) => x.routing?.route === 'Routes[1]' && x.verdict === 'allowed'),
      30_000,
    );
    expect(rec.routing).toMatchObject({ target: 'v1.grpc-api.default.dc2', retries: 2 });
    expect(rec.reason).toContain('after grpc-status 14 from');
    // Without the route's policy the UNAVAILABLE is the caller's.
    apps.v1.failNext = 1;
    expect(await unary('say', 'not retried')).toMatchObject({ code: grpc.status.UNAVAILABLE, details: 'failing on purpose' });
  });

  it('denies one method with PERMISSION_DENIED and lets the others through', async () => {
    const denied = await unary('denied', 'x');
    expect(denied).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'denied by intention web => grpc-api, permission 0' });
    expect(apps.v1.deniedReached + apps.v2.deniedReached).toBe(0);
    expect(await unary('say', 'still allowed')).toEqual({ text: 'said still allowed', code: grpc.status.OK });
  });

  it('splits unary calls of one channel 90/10 between v1 and v2 by a service-splitter', async () => {
    await put(fed.dcs.dc1.server.url, '/v1/config', {
      Kind: 'service-splitter',
      Name: 'grpc-api',
      Splits: [
        { Weight: 90, ServiceSubset: 'v1' },
        { Weight: 10, ServiceSubset: 'v2' },
      ],
    });
    // Until web's sidecar has the new chain: a Say call reaches v2.
    await until(
      'a Say call answered by v2',
      async () => {
        const before = apps.v2.traceparents.length;
        await unary('say', 'probe');
        return apps.v2.traceparents.length > before ? true : undefined;
      },
      60_000,
    );
    const before = { v1: apps.v1.traceparents.length, v2: apps.v2.traceparents.length };
    const results: Unary[] = [];
    // Fifty at a time, all on the one channel.
    for (let i = 0; i < SPLIT_CALLS; i += 50) results.push(...(await Promise.all(Array.from({ length: 50 }, (_, j) => unary('say', `split ${i + j}`)))));
    expect(results.every((r) => r.code === grpc.status.OK)).toBe(true);
    const v1 = apps.v1.traceparents.length - before.v1;
    const v2 = apps.v2.traceparents.length - before.v2;
    console.log(
      `split over ${SPLIT_CALLS} calls on one channel: v1 ${v1} (${((100 * v1) / SPLIT_CALLS).toFixed(1)} %), v2 ${v2} (${((100 * v2) / SPLIT_CALLS).toFixed(1)} %)`,
    );
    expect(v1 + v2).toBe(SPLIT_CALLS);
    // 10 % within ±3 points: a binomial draw of 500 (sd 1.34 points) stays inside with P ≈ 0.975.
    expect(Math.abs(v2 / SPLIT_CALLS - 0.1)).toBeLessThanOrEqual(0.03);
  });
});

// gRPC across two DCs, every part its own process: a grpc-js client in dc1 calls through web's
// `isthmus connect proxy` upstream listener (h2c with prior knowledge, routed per call and sent as
// streams of one pooled h2 connection over mTLS), dc1's and dc2's gateways (routing by SNI, never
// decrypting), to the server sidecar of "grpc-api" in dc2,
// registered with protocol grpc, which ends HTTP/2 and checks each call against the intentions
// written at the primary. Unary and server-streaming calls work; one method is denied with
// PERMISSION_DENIED, and dc2's flow records say which call was denied and which allowed, by path.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { putOk as put, registerGrpcWeb, startSidecar, stopAll, type Proc } from '../harness/mesh-services.js';
import { freePortOn, startFederation, type Federation3 } from '../harness/regions.js';
import { api } from '../harness/server-process.js';
import { until } from '../harness/until.js';
import { ECHO_SERVICE, echoClient, grpc, startEchoApp, type EchoApp, type EchoClient } from '../../src/sidecar/testing/grpc-echo.js';

const HOSTS = ['127.0.41.1', '127.0.42.1'];

let fed: Federation3;
let app: EchoApp;
let client: EchoClient;
let traceId = '';
const procs: Proc[] = [];

type Unary = { text?: string; code: number; details?: string };
function unary(method: 'say' | 'denied', text: string): Promise<Unary> {
  return new Promise((resolve) => {
    client[method]({ text }, new grpc.Metadata(), (err, r) =>
      resolve(err ? { code: err.code, details: err.details } : { text: r?.text, code: grpc.status.OK }),
    );
  });
}

beforeAll(async () => {
  fed = await startFederation(['dc1', 'dc2'], { hosts: HOSTS });
  const [dc1, dc2] = [fed.dcs.dc1, fed.dcs.dc2];
  app = await startEchoApp(dc2.host);
  const sidecarPort = await freePortOn(dc2.host);
  // The destination's protocol, as an operator says it both ways: on its sidecar and as service-defaults.
  await put(dc1.server.url, '/v1/config', { Kind: 'service-defaults', Name: 'grpc-api', Protocol: 'grpc' });
  await put(dc2.server.url, '/v1/agent/service/register', {
    Name: 'grpc-api',
    Address: dc2.host,
    Port: app.port,
    Connect: {
      SidecarService: { Address: dc2.host, Port: sidecarPort, Proxy: { LocalServiceAddress: dc2.host, Config: { protocol: 'grpc' } } },
    },
  });
  const upstreamPort = await registerGrpcWeb(dc1.server.url, dc1.host, ECHO_SERVICE);
  procs.push(...(await Promise.all([startSidecar('grpc-api', dc2.server.grpc, dc2.env), startSidecar('web', dc1.server.grpc, dc1.env)])));
  client = echoClient(dc1.host, upstreamPort);
  // Until the intention has reached dc2 and web's upstream has its endpoints.
  await until(
    'a unary call from dc1 answered by grpc-api in dc2',
    async () => {
      const r = await unary('say', 'warm-up');
      return r.code === grpc.status.OK ? r : undefined;
    },
    60_000,
  );
}, 180_000);

afterAll(async () => {
  client?.close();
  await stopAll(procs);
  await app?.close();
  await fed?.stop();
});

describe('gRPC through the mesh across two DCs', () => {
  it('answers a unary call', async () => {
    expect(await unary('say', 'hello from dc1')).toEqual({ text: 'said hello from dc1', code: grpc.status.OK });
  });

  it('streams a server-streaming call: each message reaches the caller in dc1 before the app in dc2 sends the next', async () => {
    const arrived: (() => void)[] = [];
    const waits = Array.from({ length: 4 }, (_, i) => new Promise<void>((r) => (arrived[i] = r)));
    app.gate = (i) => (i === 0 ? Promise.resolve() : waits[i - 1]);
    const before = app.sent;
    const got: string[] = [];
    const sentWhenArrived: number[] = [];
    const call = client.count({ n: 4 });
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('data', (m: { text: string }) => {
        got.push(m.text);
        sentWhenArrived.push(app.sent - before);
        arrived[Number(m.text)]?.();
      });
      call.on('status', resolve);
      call.on('error', () => {});
    });
    app.gate = () => Promise.resolve();
    expect(status.code).toBe(grpc.status.OK);
    expect(got).toEqual(['0', '1', '2', '3']);
    expect(sentWhenArrived).toEqual([1, 2, 3, 4]);
  });

  it('denies one method with PERMISSION_DENIED, lets the others through, and dc2 records both by path', async () => {
    const denied = await unary('denied', 'x');
    expect(denied).toEqual({ code: grpc.status.PERMISSION_DENIED, details: 'denied by intention web => grpc-api, permission 0' });
    expect(app.deniedReached).toBe(0);
    expect(await unary('say', 'still allowed')).toEqual({ text: 'said still allowed', code: grpc.status.OK });
    type Rec = {
      traceId: string;
      verdict: string;
      hop: string;
      requestIndex: number;
      source: { service: string; dc: string };
      http?: { path: string; status: number };
      intentionDc: string;
    };
    const records = await until(
      "dc2's records of both calls",
      async () => {
        const all = (await api(fed.dcs.dc2.server.url, 'GET', '/v1/flows?to=grpc-api&limit=500')).body.Records as Rec[];
        const streams = all.filter((r) => r.hop === 'server-sidecar' && r.requestIndex > 0);
        const d = streams.find((r) => r.http?.path === `/${ECHO_SERVICE}/Denied`);
        const a = streams.find((r) => r.http?.path === `/${ECHO_SERVICE}/Say` && r.verdict === 'allowed');
        return d && a ? { d, a } : undefined;
      },
      30_000,
    );
    expect(records.d).toMatchObject({ verdict: 'denied', source: { service: 'web', dc: 'dc1' }, http: { status: 200 }, intentionDc: 'dc1' });
    expect(records.a).toMatchObject({ verdict: 'allowed', source: { service: 'web', dc: 'dc1' }, http: { status: 200 } });
    traceId = records.a.traceId;
  });

  it("carried the calls on one connection through both DCs' gateways, every hop recorded under its traceId", async () => {
    type Hop = { hop: string; dc: string; requestIndex: number; http?: { path: string } };
    const hopsOf = async () => (await api(fed.dcs.dc1.server.url, 'GET', `/v1/flows?dc=all&trace=${traceId}&limit=500`)).body.Records as Hop[];
    // web's sidecar records each call (routed per call) under the trace of the pooled connection it rode.
    const calls = await until(
      "web's records of the calls on that connection",
      async () => {
        const c = (await hopsOf()).filter((r) => r.hop === 'client-sidecar' && r.requestIndex > 0);
        return c.some((r) => r.http?.path === `/${ECHO_SERVICE}/Denied`) && c.some((r) => r.http?.path === `/${ECHO_SERVICE}/Say`) ? c : undefined;
      },
      30_000,
    );
    expect(new Set(calls.map((r) => r.dc))).toEqual(new Set(['dc1']));
    // The gateways and the server sidecar record the connection when it closes: web's sidecar keeps
    // it pooled while idle, so stopping web's sidecar closes it.
    client.close();
    await stopAll([procs[1]]);
    const hops = await until(
      'the three connection hops',
      async () => {
        const seen = [...new Set((await hopsOf()).filter((r) => r.requestIndex === 0).map((r) => `${r.hop}@${r.dc}`))].sort();
        return seen.length === 3 ? seen : undefined;
      },
      30_000,
    );
    expect(hops).toEqual(['gateway-egress@dc1', 'gateway-ingress@dc2', 'server-sidecar@dc2']);
  });
});

// The client sidecar's L7 upstream in front of real `isthmus connect proxy` processes: two api
// instances behind their own sidecar processes (http inbound), fed by a real `isthmus dev` whose CA
// signs every certificate. Until the server compiles discovery chains, the client sidecar runs in
// this process with a hand-built chain (what the server will push): one instance's sidecar process
// is killed under load and no idempotent request is lost; each request's client hop joins the
// server hop the server recorded, by the connection's ClientHello random and the request's index.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompiledChain } from '../../src/config-entries/index.js';
import type { FlowRecord } from '../../src/dataflow/index.js';
import { Sidecar, type SidecarTarget } from '../../src/sidecar/index.js';
import { api, freePort, startCli, startServer, type ServerProcess } from '../harness/server-process.js';
import { startApp, stopAll, type App, type Proc } from '../harness/mesh-services.js';

let srv: ServerProcess;
const apps: App[] = [];
const procs: Proc[] = [];
let web: Sidecar;
const flows: FlowRecord[] = [];
let port = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });

function get(path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      })
      .on('error', reject);
  });
}

beforeAll(async () => {
  srv = await startServer('dev', []);
  const grpcAddr = /gRPC: (\S+)/.exec(srv.output())![1];
  const sidecarPorts: number[] = [];
  for (const id of ['api-1', 'api-2']) {
    const app = await startApp('127.0.0.1', id);
    apps.push(app);
    const sidecarPort = await freePort();
    sidecarPorts.push(sidecarPort);
    const r = await api(srv.url, 'PUT', '/v1/agent/service/register', {
      ID: id,
      Name: 'api',
      Address: '127.0.0.1',
      Port: app.port,
      Connect: { SidecarService: { Address: '127.0.0.1', Port: sidecarPort, Proxy: { LocalServiceAddress: '127.0.0.1', Config: { protocol: 'http' } } } },
    });
    expect(r.status).toBe(200);
    procs.push(
      await startCli(['connect', 'proxy', '--sidecar-for', id, '--grpc-addr', grpcAddr, '--log-level', 'warn'], new RegExp(`Sidecar for api \\(${id}-`)),
    );
  }
  const dc = ((await api(srv.url, 'GET', '/v1/catalog/datacenters')).body as string[])[0];
  const roots = (await api(srv.url, 'GET', '/v1/connect/ca/roots')).body;
  const leaf = (await api(srv.url, 'GET', '/v1/agent/connect/ca/leaf/web')).body;
  const td: string = roots.TrustDomain;
  const id = `api.default.${dc}`;
  const target: SidecarTarget = {
    id,
    datacenter: dc,
    healthy: true,
    healthAgeMs: 0,
    endpoints: sidecarPorts.map((p) => ({ host: '127.0.0.1', port: p, sni: `${id}.internal.${td}`, spiffeId: `spiffe://${td}/ns/default/dc/${dc}/svc/api` })),
  };
  const chain: CompiledChain = {
    ServiceName: 'api',
    Namespace: 'default',
    Datacenter: dc,
    Protocol: 'http',
    StartNode: 'router:api.default',
    Nodes: {
      'router:api.default': {
        Type: 'router',
        Name: 'api.default',
        Routes: [
          { Definition: { Match: { HTTP: { PathPrefix: '/' } }, Destination: { NumRetries: 2, RetryOnConnectFailure: true } }, NextNode: `resolver:${id}` },
        ],
      },
      [`resolver:${id}`]: { Type: 'resolver', Name: id, Resolver: { Default: true, ConnectTimeout: '5s', Target: id } },
    },
    Targets: {},
  };
  web = new Sidecar({
    config: {
      service: { id: 'web-sidecar-proxy', name: 'web', namespace: 'default', dc, trustDomain: td },
      leaf: { certPem: leaf.CertPEM, keyPem: leaf.PrivateKeyPEM, spiffeId: leaf.ServiceURI },
      bundle: { roots: (roots.Roots as { RootCert: string }[]).map((r) => r.RootCert), chain: leaf.Chain },
      upstreams: [
        {
          name: 'api',
          namespace: 'default',
          datacenter: dc,
          localBindHost: '127.0.0.1',
          localBindPort: 0,
          endpoints: target.endpoints,
          protocol: 'http',
          chain,
          targets: [target],
        },
      ],
      policy: { intentions: [], defaultAllow: true, index: 0, sourceDc: dc },
    },
    onFlow: (r) => flows.push(r),
  });
  await web.start();
  port = web.upstreamPort('api');
});

afterAll(async () => {
  agent.destroy();
  await web?.stop();
  await stopAll(procs);
  for (const a of apps) a.close();
  await srv?.stop();
});

describe('client sidecar L7 in front of real sidecar processes', () => {
  it('spreads requests over both instances, and each client hop joins the server hop by traceId and request index', async () => {
    const got = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const r = await get(`/hello/${i}`);
      expect(r.status).toBe(200);
      got.add(r.body);
    }
    expect(got).toEqual(new Set(['api-1', 'api-2']));
    const mine = flows.filter((f) => f.requestIndex > 0).slice(0, 6);
    expect(mine.every((f) => f.routing?.route === 'Routes[0]' && f.routing.retries === 0 && f.verdict === 'allowed')).toBe(true);
    const first = mine[0];
    let server: FlowRecord[] = [];
    for (let i = 0; i < 50 && !server.some((f) => f.requestIndex === first.requestIndex); i++) {
      server = (await api(srv.url, 'GET', `/v1/flows?trace=${first.traceId}&hop=server-sidecar`)).body.Records ?? [];
      if (!server.some((f) => f.requestIndex === first.requestIndex)) await new Promise((r) => setTimeout(r, 200));
    }
    expect(server.find((f) => f.requestIndex === first.requestIndex)).toMatchObject({
      verdict: 'allowed',
      source: { service: 'web' },
      http: { path: first.http!.path, status: 200, traceparent: first.http!.traceparent },
    });
  });

  it('loses no idempotent request when one instance’s sidecar process is killed under load', async () => {
    const results: { status: number; body: string }[] = [];
    let killed = false;
    const loop = async () => {
      for (let i = 0; i < 40; i++) {
        results.push(await get(`/work/${i}`));
        if (results.length === 45 && !killed) {
          killed = true;
          procs[0].child.kill('SIGKILL');
        }
      }
    };
    await Promise.all([loop(), loop(), loop()]);
    expect(killed).toBe(true);
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    // After the kill (and the connection failures it caused) every request went to api-2.
    expect(results.slice(-30).every((r) => r.body === 'api-2')).toBe(true);
    // The requests that met the dead instance were moved, and their records say from where.
    const moved = flows.filter((f) => (f.routing?.retries ?? 0) > 0);
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.every((f) => f.verdict === 'allowed' && /after (connect failure|reset) at 127\.0\.0\.1:\d+/.test(f.reason))).toBe(true);
  });
});

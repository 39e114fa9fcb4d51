import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { FlowRecord } from '../dataflow/index.js';
import type { Intention } from '../intentions/index.js';
import { createLogger } from '../telemetry/index.js';
import type { ChainResolverNode, CompiledChain } from '../config-entries/index.js';
import { HTTP_IDLE_TIMEOUT_MS, Sidecar, type SidecarConfig, type SidecarTarget, type SidecarUpstream } from './sidecar.js';
import {
  TD,
  apiUpstream,
  closedPort,
  intention,
  listen,
  policyOf,
  startClientSidecar,
  startServerSidecar,
  svc,
  testPki,
  useStops,
} from './testing/fixtures.js';

const stops = useStops();

async function echoApp(): Promise<{ port: number; bytes: () => number }> {
  let bytes = 0;
  const srv = net.createServer((s) => {
    s.on('data', (d) => {
      bytes += d.length;
      s.write(d);
    });
    s.on('error', () => {});
  });
  return { port: await listen(stops, srv), bytes: () => bytes };
}

async function httpApp(): Promise<number> {
  const srv = http.createServer((req, res) => res.end(`ok ${req.method} ${req.url} ${req.headers.traceparent ? 'tp' : ''}`));
  return listen(stops, srv);
}

async function pair(opts: {
  protocol?: 'tcp' | 'http';
  intentions: Intention[];
  appPort: number;
  clientLeaf?: SidecarConfig['leaf'];
  clientRoots?: string[];
  serverAs?: string;
  expect?: string;
  fastPath?: boolean;
  log?: (line: string) => void;
}) {
  const p = await testPki();
  const flows: FlowRecord[] = [];
  const api = await startServerSidecar(stops, p, {
    appPort: opts.appPort,
    protocol: opts.protocol ?? 'tcp',
    policy: policyOf(opts.intentions, 7),
    leaf: await p.leaf(opts.serverAs ?? 'api'),
    options: { onFlow: (r) => flows.push(r) },
  });
  const web = new Sidecar({
    config: {
      service: svc('web'),
      leaf: opts.clientLeaf ?? (await p.leaf('web')),
      bundle: { roots: opts.clientRoots ?? [p.root.certPem], chain: opts.clientLeaf ? [] : p.chain },
      upstreams: [
        apiUpstream({
          endpoints: [
            {
              host: '127.0.0.1',
              port: api.inboundPort,
              sni: `api.default.dc1.internal.${TD}`,
              spiffeId: opts.expect ?? `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
            },
          ],
        }),
      ],
      policy: { intentions: [], defaultAllow: false, index: 0, sourceDc: 'dc1' },
    },
    onFlow: (r) => flows.push(r),
    fastPath: opts.fastPath,
    logger: opts.log && createLogger({ level: 'info', write: opts.log }),
  });
  await web.start();
  stops.push(() => web.stop());
  return { p, api, web, flows, port: web.upstreamPort('api') };
}

function tcpExchange(port: number, payload: string): Promise<{ got: string; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => {
      got += d;
      if (got.length >= payload.length) s.end();
    });
    s.on('connect', () => s.write(payload));
    s.on('error', () => {});
    s.on('close', () => resolve({ got, closed: true }));
    setTimeout(() => s.destroy(), 3000);
  });
}

const waitFlows = async (flows: FlowRecord[], n: number) => {
  const end = Date.now() + 3000;
  while (flows.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
};

describe('Sidecar', () => {
  it('says at start which data path its upstream listeners use, and carries a call on either', async () => {
    const app = await echoApp();
    for (const fastPath of [true, false]) {
      const lines: string[] = [];
      const { port } = await pair({ intentions: [intention({ Action: 'allow' })], appPort: app.port, fastPath, log: (l) => lines.push(l) });
      const said = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'data path');
      expect(said).toEqual([expect.objectContaining(fastPath ? { path: 'fast', selfTest: 'passed' } : { path: 'plain', selfTest: 'skipped' })]);
      const payload = 'x'.repeat(200_000);
      expect((await tcpExchange(port, payload)).got).toBe(payload);
    }
  });

  it('carries an allowed TCP call end to end and records both hops under one traceId', async () => {
    const app = await echoApp();
    const { flows, port } = await pair({ intentions: [intention({ Action: 'allow' })], appPort: app.port });
    const r = await tcpExchange(port, 'hello through the mesh');
    expect(r.got).toBe('hello through the mesh');
    await waitFlows(flows, 2);
    const server = flows.find((f) => f.hop === 'server-sidecar')!;
    const client = flows.find((f) => f.hop === 'client-sidecar')!;
    expect(server).toMatchObject({
      verdict: 'allowed',
      intentionId: 'web-api',
      intentionIndex: 7,
      source: { service: 'web' },
      destination: { service: 'api' },
    });
    expect(client).toMatchObject({ verdict: 'allowed', destination: { service: 'api' } });
    expect(server.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(server.traceId).not.toBe('0'.repeat(32));
    expect(client.traceId).toBe(server.traceId);
    // The next connection resumes the TLS session; the caller's identity must still be known.
    const again = await tcpExchange(port, 'second call');
    expect(again.got).toBe('second call');
    await waitFlows(flows, 4);
    const second = flows.filter((f) => f.hop === 'server-sidecar')[1];
    expect(second).toMatchObject({ verdict: 'allowed', source: { service: 'web' } });
    expect(second.traceId).not.toBe(server.traceId);
  });

  it('closes a denied connection before a byte reaches the app, naming the intention', async () => {
    const app = await echoApp();
    const { flows, port } = await pair({ intentions: [intention({ Action: 'deny' })], appPort: app.port });
    const r = await tcpExchange(port, 'secret');
    expect(r.got).toBe('');
    expect(app.bytes()).toBe(0);
    await waitFlows(flows, 2);
    expect(flows.find((f) => f.hop === 'server-sidecar')).toMatchObject({
      verdict: 'denied',
      intentionId: 'web-api',
      reason: expect.stringContaining('denied by intention web => api'),
    });
  });

  it('refuses a connection on a tcp listener when the deciding intention has L7 permissions (issue 21)', async () => {
    const app = await echoApp();
    const l7 = intention({ Permissions: [{ Action: 'allow', HTTP: { PathPrefix: '/' } }] });
    const { flows, port } = await pair({ protocol: 'tcp', intentions: [l7], appPort: app.port });
    const r = await tcpExchange(port, 'GET / HTTP/1.1\r\nhost: api\r\n\r\n');
    expect(r.got).toBe('');
    expect(app.bytes()).toBe(0);
    await waitFlows(flows, 2);
    expect(flows.find((f) => f.hop === 'server-sidecar')).toMatchObject({
      verdict: 'denied',
      intentionId: 'web-api',
      reason: 'L7 permissions of intention web-api cannot be checked on a tcp listener; denied',
    });
  });

  it('enforces L7 permissions per request on one keep-alive connection', async () => {
    const appPort = await httpApp();
    const { flows, port } = await pair({
      protocol: 'http',
      appPort,
      intentions: [
        intention({
          Permissions: [
            { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
            { Action: 'allow', HTTP: { PathPrefix: '/' } },
          ],
        }),
      ],
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path, agent }, (res) => {
            let body = '';
            res.on('data', (d) => (body += d));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          })
          .on('error', reject);
      });
    const ok = await get('/orders');
    const denied = await get('/admin/users');
    const again = await get('/orders');
    agent.destroy();
    expect(ok).toEqual({ status: 200, body: 'ok GET /orders tp' });
    expect(denied.status).toBe(403);
    expect(JSON.parse(denied.body)).toEqual({
      Error: 'ISTHMUS_ERR_INTENTION_DENIED',
      Message: 'denied by intention web => api, permission 0',
      IntentionID: 'web-api',
      Permission: 'Permissions[0]',
    });
    expect(again.status).toBe(200);
    await waitFlows(flows, 3);
    const reqs = flows.filter((f) => f.hop === 'server-sidecar' && f.requestIndex > 0);
    expect(reqs.map((f) => [f.requestIndex, f.verdict, f.http?.status])).toEqual([
      [1, 'allowed', 200],
      [2, 'denied', 403],
      [3, 'allowed', 200],
    ]);
    expect(new Set(reqs.map((f) => f.traceId)).size).toBe(1);
  });

  it("keeps each side's Connection and Keep-Alive fields to itself (L7)", async () => {
    // The app keeps idle connections 120 s; the caller must hear this sidecar's own idle timeout.
    let seen: http.IncomingHttpHeaders = {};
    const srv = http.createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
      seen = req.headers;
      res.writeHead(200, { connection: 'keep-alive, x-app-hop', 'x-app-hop': 'app side only', 'x-app': 'passed on' });
      res.end('ok');
    });
    await listen(stops, srv);
    const { port } = await pair({
      protocol: 'http',
      appPort: (srv.address() as net.AddressInfo).port,
      intentions: [intention({ Action: 'allow' })],
    });
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http
        .get(
          {
            host: '127.0.0.1',
            port,
            path: '/',
            agent: false,
            headers: { connection: 'close, x-caller-hop', 'x-caller-hop': 'caller side only', 'x-caller': 'passed on' },
          },
          (r) => {
            r.resume();
            r.on('end', () => resolve(r));
          },
        )
        .on('error', reject);
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-app']).toBe('passed on');
    expect(res.headers['x-app-hop']).toBeUndefined();
    expect(res.headers['keep-alive']).not.toBe('timeout=120');
    expect(seen['x-caller']).toBe('passed on');
    expect(seen['x-caller-hop']).toBeUndefined();
    expect(seen.connection).not.toMatch(/close/);
    // A caller keeping its connection hears the sidecar's own idle timeout, not Node's 5 s.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const kept = await new Promise<http.IncomingMessage>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/', agent }, (r) => {
          r.resume();
          r.on('end', () => resolve(r));
        })
        .on('error', reject);
    });
    agent.destroy();
    expect(kept.headers['keep-alive']).toBe(`timeout=${HTTP_IDLE_TIMEOUT_MS / 1000}`);
  });

  it('refuses a caller whose certificate comes from another CA', async () => {
    const app = await echoApp();
    const other = await testPki();
    const stranger = await other.leaf('web');
    const { flows, port } = await pair({
      intentions: [intention({ Action: 'allow' })],
      appPort: app.port,
      clientLeaf: stranger,
      clientRoots: [],
    });
    const r = await tcpExchange(port, 'hi');
    expect(r.got).toBe('');
    expect(app.bytes()).toBe(0);
    await waitFlows(flows, 2);
    expect(flows.find((f) => f.hop === 'server-sidecar')).toMatchObject({ verdict: 'denied', reason: expect.stringMatching(/TLS handshake refused/) });
  });

  it('refuses an expired client certificate', async () => {
    const app = await echoApp();
    const p = await testPki();
    const expired = await p.leaf('web', 'dc1', { ttlMs: 60_000, now: Date.now() - 3_600_000 });
    const { flows, port } = await pair({ intentions: [intention({ Action: 'allow' })], appPort: app.port, clientLeaf: expired });
    const r = await tcpExchange(port, 'hi');
    expect(r.got).toBe('');
    expect(app.bytes()).toBe(0);
    await waitFlows(flows, 1);
    expect(flows.some((f) => f.verdict !== 'allowed')).toBe(true);
  });

  it("refuses a server that presents another service's identity", async () => {
    const app = await echoApp();
    const { flows, port } = await pair({
      intentions: [intention({ Action: 'allow', Precedence: 6 }, 'web', '*')],
      appPort: app.port,
      serverAs: 'db',
      expect: `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
    });
    const r = await tcpExchange(port, 'hi');
    expect(r.got).toBe('');
    await waitFlows(flows, 1);
    expect(flows.find((f) => f.hop === 'client-sidecar')).toMatchObject({ verdict: 'denied', reason: expect.stringContaining('expected spiffe://') });
  });

  it('keeps one service as an upstream in two DCs apart: each listener reaches its own DC, and each goes with its upstream', async () => {
    const p = await testPki();
    const policy = policyOf([intention({ Action: 'allow' })]);
    const servers: Record<string, Sidecar> = {};
    for (const dc of ['dc2', 'dc3']) {
      // Each DC's app says which DC it is on the first byte it gets.
      const appPort = await listen(
        stops,
        net.createServer((s) => s.once('data', () => s.end(dc))),
      );
      servers[dc] = await startServerSidecar(stops, p, { appPort, protocol: 'tcp', policy });
    }
    const upstream = (dc: string) => ({
      name: 'api',
      namespace: 'default',
      datacenter: dc,
      localBindHost: '127.0.0.1',
      localBindPort: 0,
      endpoints: [
        { host: '127.0.0.1', port: servers[dc].inboundPort, sni: `api.default.${dc}.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api` },
      ],
    });
    const web = await startClientSidecar(stops, p, { upstreams: [upstream('dc2'), upstream('dc3')], policy });
    const [p2, p3] = [web.upstreamPort('api', 'dc2'), web.upstreamPort('api', 'dc3')];
    expect(p2).toBeGreaterThan(0);
    expect(p3).toBeGreaterThan(0);
    expect(p2).not.toBe(p3);
    expect((await tcpExchange(p2, 'x')).got).toBe('dc2');
    expect((await tcpExchange(p3, 'x')).got).toBe('dc3');
    await web.update({ upstreams: [upstream('dc3')] });
    expect(web.upstreamPort('api', 'dc2')).toBe(0);
    expect((await tcpExchange(p3, 'x')).got).toBe('dc3');
    const refused = await new Promise<string>((r) =>
      net
        .connect(p2, '127.0.0.1')
        .once('error', (e: NodeJS.ErrnoException) => r(e.code ?? ''))
        .once('connect', () => r('connected')),
    );
    expect(refused).toBe('ECONNREFUSED');
  });

  describe('a tcp upstream with a discovery chain', () => {
    /** api in dc1 and dc2, each app saying its DC; a web sidecar whose api upstream fails over dc1 -> dc2. */
    async function failoverMesh(
      edit: (targets: SidecarTarget[]) => SidecarTarget[],
      extra: Partial<SidecarUpstream> = {},
      connectTimeout = '5s',
      loadBalancer?: ChainResolverNode['LoadBalancer'],
    ) {
      const p = await testPki();
      const policy = policyOf([intention({ Action: 'allow' })]);
      const ports: Record<string, number> = {};
      for (const dc of ['dc1', 'dc2']) {
        const appPort = await listen(
          stops,
          net.createServer((s) => s.once('data', () => s.end(dc))),
        );
        const server = await startServerSidecar(stops, p, { appPort, protocol: 'tcp', policy });
        ports[dc] = server.inboundPort;
      }
      const ep = (dc: string, port = ports[dc]) => ({
        host: '127.0.0.1',
        port,
        sni: `api.default.${dc}.internal.${TD}`,
        spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api`,
      });
      const targets = edit([
        { id: 'api.default.dc1', datacenter: 'dc1', healthy: true, healthAgeMs: 0, endpoints: [ep('dc1')] },
        { id: 'api.default.dc2', datacenter: 'dc2', healthy: true, healthAgeMs: 0, endpoints: [ep('dc2')] },
      ]);
      const chain: CompiledChain = {
        ServiceName: 'api',
        Namespace: 'default',
        Datacenter: 'dc1',
        Protocol: 'tcp',
        StartNode: 'resolver:api.default.dc1',
        Nodes: {
          'resolver:api.default.dc1': {
            Type: 'resolver',
            Name: 'api.default.dc1',
            Resolver: { Default: false, ConnectTimeout: connectTimeout, Target: 'api.default.dc1', Failover: { Targets: ['api.default.dc2'] } },
            ...(loadBalancer ? { LoadBalancer: loadBalancer } : {}),
          },
        },
        Targets: {},
      };
      const flows: FlowRecord[] = [];
      const web = await startClientSidecar(stops, p, {
        upstreams: [
          apiUpstream({
            endpoints: targets[0].endpoints,
            protocol: 'tcp',
            chain,
            targets,
            ...extra,
          }),
        ],
        policy,
        options: { onFlow: (r) => flows.push(r) },
      });
      return { port: web.upstreamPort('api'), flows, ep };
    }

    it("fails over to the next target at once when the primary's endpoints refuse, then skips them once ejected", async () => {
      const closed = [await closedPort(), await closedPort()];
      const m = await failoverMesh((ts) => [{ ...ts[0], endpoints: closed.map((port) => ({ ...ts[0].endpoints[0], port })) }, ts[1]], {
        passiveHealthCheck: { MaxFailures: 1, MaxEjectionPercent: 100 },
      });
      expect((await tcpExchange(m.port, 'x')).got).toBe('dc2');
      await waitFlows(m.flows, 1);
      const first = m.flows[0];
      expect(first).toMatchObject({ verdict: 'allowed', sni: `api.default.dc2.internal.${TD}` });
      expect(first.routing).toMatchObject({ target: 'api.default.dc2', route: '', split: '', retries: 2 });
      expect(first.routing!.failover).toMatch(/^connect failure at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)$/);
      // Each refusal ejected its endpoint: the next call goes to dc2 up front, and says why.
      expect((await tcpExchange(m.port, 'x')).got).toBe('dc2');
      await waitFlows(m.flows, 2);
      expect(m.flows[1].routing).toMatchObject({ target: 'api.default.dc2', retries: 0, failover: 'api.default.dc1: 2 endpoints ejected' });
    });

    it("gives up on an endpoint that accepts but never completes the handshake after the resolver's ConnectTimeout", async () => {
      // A host that takes the SYN and then says nothing, as one behind a dead DC's load balancer may.
      const held = new Set<net.Socket>();
      const silent = net.createServer((s) => {
        held.add(s);
        // It reads (and ignores) the ClientHello, so it sees the sidecar hang up.
        s.resume();
        s.on('error', () => {});
      });
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      stops.push(
        () =>
          new Promise<void>((r) => {
            for (const s of held) s.destroy();
            silent.close(() => r());
          }),
      );
      const silentPort = (silent.address() as net.AddressInfo).port;
      const m = await failoverMesh((ts) => [{ ...ts[0], endpoints: [{ ...ts[0].endpoints[0], port: silentPort }] }, ts[1]], {}, '300ms');
      const t0 = Date.now();
      expect((await tcpExchange(m.port, 'x')).got).toBe('dc2');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      await waitFlows(m.flows, 1);
      expect(m.flows[0].routing).toMatchObject({ target: 'api.default.dc2', retries: 1, failover: `connect failure at 127.0.0.1:${silentPort} (ETIMEDOUT)` });
      // The abandoned connection is closed, not left open.
      for (let i = 0; i < 100 && [...held].some((s) => !s.destroyed); i++) await new Promise((r) => setTimeout(r, 20));
      expect([...held].map((s) => s.destroyed)).toEqual([true]);
    });

    it('hashes the caller’s source IP (ring_hash SourceIP): every connection from the app reaches one endpoint', async () => {
      // dc1's target lists both instances (each app answers its own name): round robin takes turns.
      const both = (ts: SidecarTarget[]) => [{ ...ts[0], endpoints: [ts[0].endpoints[0], { ...ts[1].endpoints[0], sni: ts[0].endpoints[0].sni }] }, ts[1]];
      const rr = await failoverMesh(both);
      const turns = new Set<string>();
      for (let i = 0; i < 4; i++) turns.add((await tcpExchange(rr.port, 'x')).got);
      expect(turns).toEqual(new Set(['dc1', 'dc2']));
      const hashed = await failoverMesh(both, {}, '5s', { Policy: 'ring_hash', HashPolicies: [{ SourceIP: true }] });
      const got = new Set<string>();
      for (let i = 0; i < 20; i++) got.add((await tcpExchange(hashed.port, 'x')).got);
      expect(got.size).toBe(1);
    });

    it('takes the primary while healthy, and the failover target when the server says it has no healthy instance', async () => {
      const healthy = await failoverMesh((ts) => ts);
      expect((await tcpExchange(healthy.port, 'x')).got).toBe('dc1');
      await waitFlows(healthy.flows, 1);
      expect(healthy.flows[0].routing).toEqual({ target: 'api.default.dc1', route: '', split: '', retries: 0, failover: '' });
      const sick = await failoverMesh((ts) => [{ ...ts[0], healthy: false }, ts[1]]);
      expect((await tcpExchange(sick.port, 'x')).got).toBe('dc2');
      await waitFlows(sick.flows, 1);
      expect(sick.flows[0].routing).toMatchObject({ target: 'api.default.dc2', retries: 0, failover: 'no healthy instance of api.default.dc1' });
    });
  });
});

// The L7 upstream listener over real mTLS: a client sidecar with a hand-built discovery chain in
// front of real server sidecars (http inbound), each before an app that says which instance it is.
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { ChainResolverNode, CompiledChain } from '../config-entries/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import type { Intention } from '../intentions/index.js';
import { Sidecar, type SidecarConfig, type SidecarUpstream } from './sidecar.js';
import { retriable, retryPolicyOf } from './retry-policy.js';
import { traceparentOf } from './upstream-http.js';
import type { UpstreamState } from './upstream-state.js';
import {
  TD,
  V1,
  V1_DC2,
  V2,
  apiUpstream,
  chainTarget,
  closedPort,
  intention,
  listen,
  policyOf,
  splitChain,
  startClientSidecar,
  startServerSidecar,
  svc,
  targetOf,
  testPki,
  useStops,
  type TestPki,
} from './testing/fixtures.js';

const stops = useStops();
const allow = intention({ Action: 'allow' });
const policy = policyOf([allow]);

/** What every app answers: which instance, and what it was sent. */
interface Seen {
  instance: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Behaviour = (req: http.IncomingMessage, res: http.ServerResponse, instance: string) => boolean;

interface Instance {
  name: string;
  dc: string;
  sidecar: Sidecar;
  hits: number;
}

/** One api instance: an app and its server sidecar (L7 inbound). `behave` may answer instead of the echo. */
async function instance(p: TestPki, name: string, dc: string, behave?: Behaviour): Promise<Instance> {
  const inst = { name, dc, hits: 0 } as Instance;
  const app = http.createServer((req, res) => {
    inst.hits++;
    if (behave?.(req, res, name)) return;
    let got = '';
    req.on('data', (d) => (got += d));
    req.on('end', () => {
      const body = JSON.stringify({ instance: name, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: got } satisfies Seen);
      res.writeHead(200, { 'content-type': 'application/json', 'x-app-says': 'hi' });
      res.end(body);
    });
  });
  await listen(stops, app);
  inst.sidecar = await startServerSidecar(stops, p, { dc, appPort: (app.address() as net.AddressInfo).port, protocol: 'http', policy });
  return inst;
}

/**
 * The chain under test: Routes[0] `x-version: v2` -> v2; Routes[1] /slow with a 500 ms timeout;
 * Routes[2] /flaky retried on 503; Routes[3] /kill retried on connect failure; Routes[4] /old
 * rewritten to /new with header edits; Routes[5] /idle with a 400 ms IdleTimeout; Routes[6] the rest -> a 90/10 split of v1/v2. v1 fails over to dc2.
 */
function testChain(): CompiledChain {
  return splitChain('http', [
    { Definition: { Match: { HTTP: { Header: [{ Name: 'x-version', Exact: 'v2' }] } } }, NextNode: `resolver:${V2}` },
    { Definition: { Match: { HTTP: { PathPrefix: '/slow' } }, Destination: { RequestTimeout: '500ms' } }, NextNode: `resolver:${V1}` },
    { Definition: { Match: { HTTP: { PathPrefix: '/flaky' } }, Destination: { NumRetries: 3, RetryOnStatusCodes: [503] } }, NextNode: `resolver:${V1}` },
    { Definition: { Match: { HTTP: { PathPrefix: '/kill' } }, Destination: { NumRetries: 2, RetryOnConnectFailure: true } }, NextNode: `resolver:${V1}` },
    {
      Definition: {
        Match: { HTTP: { PathPrefix: '/old/' } },
        Destination: {
          PrefixRewrite: '/new/',
          RequestHeaders: { Set: { 'x-route': 'old' }, Remove: ['x-drop'] },
          ResponseHeaders: { Add: { 'x-served-by': 'mesh' }, Remove: ['x-app-says'] },
        },
      },
      NextNode: `resolver:${V1}`,
    },
    {
      Definition: { Match: { HTTP: { PathPrefix: '/idle' } }, Destination: { IdleTimeout: '400ms', RequestTimeout: '10s' } },
      NextNode: `resolver:${V1}`,
    },
  ]);
}

async function mesh(opts: { behave?: Behaviour; upstream?: (u: SidecarUpstream, m: { v1: Instance[]; v2: Instance; dc2: Instance }) => SidecarUpstream } = {}) {
  const p = await testPki();
  const v1 = [await instance(p, 'v1a', 'dc1', opts.behave), await instance(p, 'v1b', 'dc1', opts.behave)];
  const v2 = await instance(p, 'v2', 'dc1', opts.behave);
  const dc2 = await instance(p, 'dc2', 'dc2', opts.behave);
  const targets = [targetOf(V1, v1), targetOf(V2, [v2]), targetOf(V1_DC2, [dc2])];
  let upstream: SidecarUpstream = apiUpstream({
    endpoints: targets[0].endpoints,
    protocol: 'http',
    chain: testChain(),
    targets,
  });
  if (opts.upstream) upstream = opts.upstream(upstream, { v1, v2, dc2 });
  const flows: FlowRecord[] = [];
  const web = await startClientSidecar(stops, p, { upstreams: [upstream], policy, options: { onFlow: (r) => flows.push(r) } });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  stops.push(() => agent.destroy());
  const port = web.upstreamPort('api');
  const call = (path: string, headers: Record<string, string> = {}, method = 'GET', body?: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const r = http.request({ host: '127.0.0.1', port, path, method, headers, agent }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      });
      r.on('error', reject);
      r.end(body);
    });
  return { p, v1, v2, dc2, web, flows, call, upstream };
}

/** The app port a sidecar's inbound forwards to (as configured). */
const appPortOf = (s: Sidecar) => (s as unknown as { ctx: { config: SidecarConfig } }).ctx.config.inbound!.localAppPort;

const clientFlows = (flows: FlowRecord[]) => flows.filter((f) => f.hop === 'client-sidecar' && f.requestIndex > 0);
const seen = (body: string) => JSON.parse(body) as Seen;

describe('the L7 upstream listener', () => {
  it('sends only requests with the header route to v2, and the rest 90/10 by the splitter, naming route and split', async () => {
    const m = await mesh();
    const tagged: string[] = [];
    for (let i = 0; i < 20; i++) tagged.push(seen((await m.call('/x', { 'x-version': 'v2' })).body).instance);
    expect(new Set(tagged)).toEqual(new Set(['v2']));
    const plain: Seen[] = [];
    for (let i = 0; i < 100; i++) plain.push(seen((await m.call('/y')).body));
    const recs = clientFlows(m.flows);
    expect(recs).toHaveLength(120);
    expect(recs.slice(0, 20).every((r) => r.routing?.route === 'Routes[0]' && r.routing.split === '' && r.routing.target === V2)).toBe(true);
    // Each untagged request went where its split said, and the split's own header edit came with it.
    recs.slice(20).forEach((r, i) => {
      expect(r.routing?.route).toBe('Routes[6]');
      const toV2 = r.routing?.split === 'Splits[1]';
      expect(plain[i].instance === 'v2').toBe(toV2);
      expect(plain[i].headers['x-split']).toBe(toV2 ? 'v2' : 'v1');
      expect(r.routing?.target).toBe(toV2 ? V2 : V1);
    });
    const toV2 = plain.filter((s) => s.instance === 'v2').length;
    // 10 % of 100, loosely (a binomial draw: P(outside 1..25) is below 1e-5).
    expect(toV2).toBeGreaterThan(0);
    expect(toV2).toBeLessThan(26);
    // Round robin over v1's two instances.
    expect(new Set(plain.filter((s) => s.instance !== 'v2').map((s) => s.instance))).toEqual(new Set(['v1a', 'v1b']));
    // The client hop's record joins the server hop's by the connection's ClientHello random.
    expect(recs[0].traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(recs[0].traceId).not.toBe('0'.repeat(32));
    expect(recs[0].http).toMatchObject({ method: 'GET', path: '/x', status: 200, traceparent: expect.stringMatching(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/) });
  });

  it('rewrites the prefix, edits request and response headers, and passes the caller’s traceparent on', async () => {
    const m = await mesh();
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await m.call('/old/thing?q=1', { 'x-drop': 'secret', 'x-route': 'caller', traceparent: tp });
    const s = seen(r.body);
    expect(s.url).toBe('/new/thing?q=1');
    expect(s.headers['x-route']).toBe('old');
    expect(s.headers['x-drop']).toBeUndefined();
    expect(s.headers.traceparent).toBe(tp);
    expect(r.headers['x-served-by']).toBe('mesh');
    expect(r.headers['x-app-says']).toBeUndefined();
    const rec = clientFlows(m.flows)[0];
    expect(rec.routing).toMatchObject({ route: 'Routes[4]', target: V1 });
    expect(rec.http?.traceparent).toBe(tp);
    // Without one, the client sidecar starts a trace.
    const fresh = seen((await m.call('/old/x')).body);
    expect(fresh.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it("answers 504 in the project's error shape once the route's RequestTimeout runs out", async () => {
    const m = await mesh({
      behave: (req, res) => {
        if (!req.url?.startsWith('/slow')) return false;
        const t = setTimeout(() => res.end('late'), 3000);
        res.once('close', () => clearTimeout(t));
        return true;
      },
    });
    const t0 = Date.now();
    const r = await m.call('/slow');
    const took = Date.now() - t0;
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toEqual({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: expect.stringContaining('within 500 ms (Routes[1] RequestTimeout)') });
    expect(took).toBeGreaterThanOrEqual(490);
    expect(took).toBeLessThan(1500);
    expect(clientFlows(m.flows)[0]).toMatchObject({ verdict: 'error', http: { status: 504 }, routing: { route: 'Routes[1]', target: V1 } });
  });

  it("ends a request silent for the route's IdleTimeout with 504 before the answer, and cuts a stalled answer", async () => {
    const m = await mesh({
      behave: (req, res) => {
        if (!req.url?.startsWith('/idle')) return false;
        // /idle/silent never answers; /idle/stall sends its head and a first chunk, then nothing more.
        if (req.url.startsWith('/idle/stall')) res.writeHead(200, { 'content-type': 'text/plain' }).write('first');
        const t = setTimeout(() => res.end('late'), 5000);
        res.once('close', () => clearTimeout(t));
        return true;
      },
    });
    const t0 = Date.now();
    const silent = await m.call('/idle/silent');
    const took = Date.now() - t0;
    expect(silent.status).toBe(504);
    expect(JSON.parse(silent.body)).toEqual({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: expect.stringContaining('(Routes[5] IdleTimeout)') });
    expect(took).toBeGreaterThanOrEqual(390);
    expect(took).toBeLessThan(3000);
    // The stalled answer's head arrives, then the stream is cut: the body never completes.
    const stalled = await new Promise<{ status: number; complete: boolean }>((resolve, reject) => {
      const r = http.get({ host: '127.0.0.1', port: m.web.upstreamPort('api'), path: '/idle/stall' }, (res) => {
        res.on('data', () => {});
        res.on('error', () => {});
        res.once('close', () => resolve({ status: res.statusCode!, complete: res.complete }));
      });
      r.on('error', reject);
    });
    expect(stalled).toEqual({ status: 200, complete: false });
    await expect.poll(() => clientFlows(m.flows).length).toBeGreaterThanOrEqual(2);
    const [a, b] = clientFlows(m.flows);
    expect(a).toMatchObject({ verdict: 'error', http: { status: 504 }, routing: { route: 'Routes[5]' } });
    expect(b).toMatchObject({ verdict: 'error', reason: expect.stringContaining('(Routes[5] IdleTimeout)') });
  });

  it('retries a 503 as the route says, and the flow record counts the retries', async () => {
    let failuresLeft = 2;
    const m = await mesh({
      behave: (req, res) => {
        if (!req.url?.startsWith('/flaky') || failuresLeft <= 0) return false;
        failuresLeft--;
        res.writeHead(503).end('busy');
        return true;
      },
    });
    const r = await m.call('/flaky');
    expect(r.status).toBe(200);
    const rec = clientFlows(m.flows)[0];
    expect(rec).toMatchObject({ verdict: 'allowed', http: { status: 200 }, routing: { route: 'Routes[2]', retries: 2, target: V1 } });
    expect(rec.reason).toMatch(/^answered 200 after 503 from 127\.0\.0\.1:\d+$/);
    expect(rec.bytesOut).toBe(Buffer.byteLength(r.body));
    expect(m.v1[0].hits + m.v1[1].hits).toBe(3);
    // Without a retry policy the 503 is the caller's.
    failuresLeft = 1;
    // (The header route comes first and has none.)
    expect((await m.call('/flaky', { 'x-version': 'v2' })).status).toBe(503);
    expect(clientFlows(m.flows)[1]).toMatchObject({ reason: 'answered 503', routing: { retries: 0 } });
  });

  it('sends a retried request body again whole', async () => {
    let failuresLeft = 2;
    const m = await mesh({
      behave: (req, res) => {
        if (!req.url?.startsWith('/flaky') || failuresLeft <= 0) return false;
        failuresLeft--;
        req.resume();
        res.writeHead(503).end('busy');
        return true;
      },
    });
    const r = await m.call('/flaky/orders', { 'content-type': 'text/plain' }, 'POST', 'order #1');
    expect(r.status).toBe(200);
    expect(seen(r.body)).toMatchObject({ method: 'POST', body: 'order #1' });
    expect(clientFlows(m.flows)[0].routing?.retries).toBe(2);
  });

  it('ejects an instance after consecutive 5xx (PassiveHealthCheck) and sends the rest to the other', async () => {
    const m = await mesh({
      behave: (req, res, instance) => {
        if (instance !== 'v1b' || !req.url?.includes('sick')) return false;
        res.writeHead(500).end('sick');
        return true;
      },
      upstream: (u) => ({ ...u, passiveHealthCheck: { MaxFailures: 3, MaxEjectionPercent: 50 } }),
    });
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await m.call('/old/sick')).status);
    // Round robin hands v1b every other request until its third 500 ejects it.
    expect(m.v1[1].hits).toBe(3);
    expect(statuses.filter((s) => s === 500)).toHaveLength(3);
    expect(statuses.slice(6)).toEqual(Array(14).fill(200));
  });

  it('loses no idempotent request when one of two instances dies under load (RetryOnConnectFailure)', async () => {
    const m = await mesh();
    const statuses: number[] = [];
    let killed = false;
    const loop = async (n: number) => {
      for (let i = 0; i < n; i++) {
        statuses.push((await m.call(`/kill/${i}`)).status);
        if (statuses.length === 40 && !killed) {
          killed = true;
          await m.v1[0].sidecar.stop();
        }
      }
    };
    await Promise.all([loop(30), loop(30), loop(30)]);
    expect(killed).toBe(true);
    expect(statuses).toHaveLength(90);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    const hitsAfter = m.v1[1].hits;
    expect(hitsAfter).toBeGreaterThan(45);
    // The dead instance's failures are on record as moves to the other endpoint.
    const moved = clientFlows(m.flows).filter((f) => (f.routing?.retries ?? 0) > 0);
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.every((f) => f.routing?.target === V1 && f.verdict === 'allowed')).toBe(true);
  });

  it("fails over to dc2 when v1's endpoints in dc1 refuse, then ejects them and says so", async () => {
    const closed = await closedPort();
    const m = await mesh({
      upstream: (u) => ({
        ...u,
        passiveHealthCheck: { MaxFailures: 2, MaxEjectionPercent: 100 },
        targets: u.targets!.map((t) => (t.id === V1 ? { ...t, endpoints: t.endpoints.map((e) => ({ ...e, port: closed })) } : t)),
      }),
    });
    const first = await m.call('/y', { 'x-version': 'v1' });
    // (x-version: v1 matches no header route: the splitter may pick v2; retry until a v1 pick.)
    const calls = [first];
    while (calls.length < 12) calls.push(await m.call('/y'));
    const recs = clientFlows(m.flows);
    const v1recs = recs.filter((r) => r.routing?.split === 'Splits[0]');
    expect(v1recs.length).toBeGreaterThan(3);
    expect(v1recs.every((r) => r.routing?.target === V1_DC2 && r.http?.status === 200)).toBe(true);
    expect(v1recs[0].routing?.failover).toBe(`connect failure at 127.0.0.1:${closed} (ECONNREFUSED)`);
    // Two failures each eject both dc1 endpoints; from then on dc2 is chosen up front, and why.
    const last = v1recs.at(-1)!;
    expect(last.routing).toMatchObject({ retries: 0, failover: `${V1}: 2 endpoints ejected` });
    for (const c of calls) if (seen(c.body).instance !== 'v2') expect(seen(c.body).instance).toBe('dc2');
  });

  it('goes straight to the failover target when the server says the primary has no healthy instance', async () => {
    const m = await mesh({ upstream: (u) => ({ ...u, targets: u.targets!.map((t) => (t.id === V1 ? { ...t, healthy: false } : t)) }) });
    const r = await m.call('/kill/1');
    expect(seen(r.body).instance).toBe('dc2');
    expect(clientFlows(m.flows)[0].routing).toMatchObject({ target: V1_DC2, retries: 0, failover: `no healthy instance of ${V1}` });
  });

  it('proxies an http upstream that has no chain (and, as the wire decodes an old server, no targets) over its plain endpoints, without routing in the records', async () => {
    const m = await mesh({ upstream: (u) => ({ ...u, chain: undefined, targets: [] }) });
    const got = new Set<string>();
    for (let i = 0; i < 4; i++) got.add(seen((await m.call('/z')).body).instance);
    expect(got).toEqual(new Set(['v1a', 'v1b']));
    expect(clientFlows(m.flows).every((f) => f.routing === undefined && f.verdict === 'allowed')).toBe(true);
  });

  it('takes the next endpoint when a server sidecar answers that its app is unreachable, without a retry policy', async () => {
    const m = await mesh();
    // A server sidecar in front of a port nobody listens on: it answers 502 with the marker field.
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const dead = new Sidecar({
      config: {
        service: svc('api'),
        leaf: await m.p.leaf('api', 'dc1'),
        bundle: m.p.bundle,
        inbound: { bindHost: '127.0.0.1', bindPort: 0, localAppHost: '127.0.0.1', localAppPort: deadPort, protocol: 'http' },
        upstreams: [],
        policy,
      },
      onFlow: () => {},
    });
    await dead.start();
    stops.push(() => dead.stop());
    const v1 = targetOf(V1, [...m.v1]);
    v1.endpoints.unshift({ host: '127.0.0.1', port: dead.inboundPort, sni: `${V1}.internal.${TD}`, spiffeId: `spiffe://${TD}/ns/default/dc/dc1/svc/api` });
    await m.web.update({ upstreams: [{ ...m.upstream, endpoints: v1.endpoints, targets: [v1, ...m.upstream.targets!.slice(1)] }] });
    // Routes[6] (the split) has no retry policy: only the marker lets a request move on.
    const got: number[] = [];
    for (let i = 0; i < 12; i++) got.push((await m.call('/y', { 'x-version': 'v1' })).status);
    expect(got.every((s) => s === 200)).toBe(true);
    const moved = clientFlows(m.flows).filter((r) => r.reason.includes(`${dead.inboundPort}`));
    expect(moved.length).toBeGreaterThan(0);
    expect(moved.every((r) => r.verdict === 'allowed' && r.http?.status === 200)).toBe(true);
  });

  it("restarts a server sidecar's inbound on the same port when a push changes its protocol", async () => {
    const m = await mesh();
    const sidecar = m.v2.sidecar;
    const port = sidecar.inboundPort;
    const deny: Intention = {
      ...allow,
      ID: 'web-api-l7',
      Action: undefined,
      Permissions: [
        { Action: 'deny', HTTP: { PathPrefix: '/admin' } },
        { Action: 'allow', HTTP: { PathPrefix: '/' } },
      ],
    } as Intention;
    await sidecar.update({ policy: { ...policy, intentions: [deny] } });
    // Each call on a new mTLS connection as web: a listener's protocol applies to the connections it takes.
    const web = await m.p.leaf('web', 'dc1');
    const v2 = (path: string) =>
      new Promise<string>((resolve) => {
        const sock = tls.connect({
          host: '127.0.0.1',
          port,
          servername: `${V2}.internal.${TD}`,
          key: web.keyPem,
          cert: [web.certPem.trim(), ...m.p.bundle.chain].join('\n'),
          ca: m.p.bundle.roots,
          checkServerIdentity: () => undefined,
        });
        let got = '';
        sock.on('data', (d) => (got += d));
        sock.on('error', () => {});
        sock.once('secureConnect', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n`));
        sock.once('close', () => resolve(got.split('\r\n')[0] || 'closed'));
      });
    expect(await v2('/admin')).toBe('HTTP/1.1 403 Forbidden');
    expect(await v2('/ok')).toBe('HTTP/1.1 200 OK');
    // Pushed as tcp: the L7 rule cannot be checked, so every new connection is refused (fail closed).
    const inbound = (protocol: 'tcp' | 'http') => ({
      bindHost: '127.0.0.1',
      bindPort: port,
      localAppHost: '127.0.0.1',
      localAppPort: appPortOf(sidecar),
      protocol,
    });
    await sidecar.update({ inbound: inbound('tcp') });
    expect(sidecar.inboundPort).toBe(port);
    expect(await v2('/ok')).toBe('closed');
    // And back: requests are checked one by one again.
    await sidecar.update({ inbound: inbound('http') });
    expect(sidecar.inboundPort).toBe(port);
    expect(await v2('/ok')).toBe('HTTP/1.1 200 OK');
    expect(await v2('/admin')).toBe('HTTP/1.1 403 Forbidden');
  });

  it('swaps an upstream listener between L4 and L7 on a push, on the same port', async () => {
    const m = await mesh();
    const port = m.web.upstreamPort('api');
    await m.web.update({ upstreams: [{ ...m.upstream, protocol: 'tcp', chain: undefined, targets: undefined }] });
    expect(m.web.upstreamPort('api')).toBe(port);
    // At L4 the call still arrives (the server sidecar speaks HTTP), but no request record is written.
    const before = clientFlows(m.flows).length;
    const r = await new Promise<number>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port, path: '/l4', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode!));
        })
        .on('error', reject),
    );
    expect(r).toBe(200);
    expect(clientFlows(m.flows).length).toBe(before);
  });
});

/** A chain of one resolver (v1) with a LoadBalancer, over v1a, v1b and v2 as one target's three endpoints. */
function balanced(lb: NonNullable<ChainResolverNode['LoadBalancer']>) {
  return (u: SidecarUpstream, m: { v1: Instance[]; v2: Instance }): SidecarUpstream => {
    const chain: CompiledChain = {
      ServiceName: 'api',
      Namespace: 'default',
      Datacenter: 'dc1',
      Protocol: 'http',
      StartNode: `resolver:${V1}`,
      Nodes: { [`resolver:${V1}`]: { Type: 'resolver', Name: V1, Resolver: { Default: false, ConnectTimeout: '5s', Target: V1 }, LoadBalancer: lb } },
      Targets: { [V1]: chainTarget(V1) },
    };
    const t = targetOf(V1, [...m.v1, m.v2]);
    return { ...u, chain, targets: [t], endpoints: t.endpoints };
  };
}

describe('the resolver LoadBalancer on the L7 path', () => {
  it('ring_hash on a header: one x-user always reaches the same instance, different users more than one', async () => {
    const m = await mesh({ upstream: balanced({ Policy: 'ring_hash', HashPolicies: [{ Field: 'header', FieldValue: 'x-user' }] }) });
    const ann = new Set<string>();
    for (let i = 0; i < 50; i++) ann.add(seen((await m.call('/x', { 'x-user': 'ann' })).body).instance);
    expect(ann.size).toBe(1);
    const users = new Map<string, Set<string>>();
    for (let i = 0; i < 60; i++) {
      const u = `user-${i % 20}`;
      const got = users.get(u) ?? new Set<string>();
      got.add(seen((await m.call('/x', { 'x-user': u })).body).instance);
      users.set(u, got);
    }
    expect([...users.values()].every((s) => s.size === 1)).toBe(true);
    expect(new Set([...users.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    // Without the header (Envoy: no hash, a random pick) requests still go through, to more than one instance.
    const plain = new Set<string>();
    for (let i = 0; i < 30; i++) plain.add(seen((await m.call('/x')).body).instance);
    expect(plain.size).toBeGreaterThan(1);
  });

  it('a cookie policy with a TTL sets the cookie on the first answer, and the requests that carry it stick', async () => {
    const m = await mesh({
      upstream: balanced({ Policy: 'maglev', HashPolicies: [{ Field: 'cookie', FieldValue: 'route', CookieConfig: { TTL: '10m', Path: '/' } }] }),
    });
    const first = await m.call('/x');
    expect(first.status).toBe(200);
    const set = first.headers['set-cookie'];
    expect(set).toHaveLength(1);
    expect(set![0]).toMatch(/^route="[0-9a-f]{16}"; Max-Age=600; Path=\/; HttpOnly$/);
    const cookie = set![0].split(';')[0];
    const where = new Set([seen(first.body).instance]);
    for (let i = 0; i < 30; i++) {
      const r = await m.call('/x', { cookie: `other=1; ${cookie}` });
      expect(r.headers['set-cookie']).toBeUndefined();
      where.add(seen(r.body).instance);
    }
    // The made-up value is what the first request was balanced on, so it stays where it went.
    expect(where.size).toBe(1);
    // Other callers' cookies spread over the instances.
    const spread = new Set<string>();
    for (let i = 0; i < 30; i++) spread.add(seen((await m.call('/x', { cookie: `route="c${i}"` })).body).instance);
    expect(spread.size).toBeGreaterThan(1);
  });

  it('least_request counts each attempt while it is in flight and forgets it once answered', async () => {
    const held: http.ServerResponse[] = [];
    const m = await mesh({
      upstream: balanced({ Policy: 'least_request' }),
      behave: (req, res, name) => {
        if (req.url !== '/hold') return false;
        req.resume();
        held.push(res.setHeader('x-instance', name));
        return true;
      },
    });
    const state = (m.web as unknown as { upstreamSide: { outbound: Map<string, { state: UpstreamState }> } }).upstreamSide.outbound.values().next().value!
      .state;
    const eps = targetOf(V1, [...m.v1, m.v2]).endpoints;
    const calls = Array.from({ length: 6 }, () => m.call('/hold'));
    while (held.length < 6) await new Promise((r) => setTimeout(r, 10));
    const inFlight = eps.map((e) => state.inFlight(V1, e));
    expect(inFlight.reduce((a, b) => a + b)).toBe(6);
    // Where the app holds them is where the sidecar counts them.
    const byName = (name: string) => held.filter((r) => r.getHeader('x-instance') === name).length;
    expect(inFlight).toEqual([byName('v1a'), byName('v1b'), byName('v2')]);
    for (const r of held) r.end('done');
    expect((await Promise.all(calls)).every((r) => r.status === 200)).toBe(true);
    // The body is through before the count drops: wait for the sidecar to see each answer end.
    for (let i = 0; i < 100 && eps.some((e) => state.inFlight(V1, e) > 0); i++) await new Promise((r) => setTimeout(r, 10));
    expect(eps.map((e) => state.inFlight(V1, e))).toEqual([0, 0, 0]);
  });
});

describe('retry conditions (Envoy retry_on)', () => {
  it('maps Consul fields to a policy, and each condition to what it retries', () => {
    expect(retryPolicyOf(undefined)).toBeUndefined();
    expect(retryPolicyOf({ PrefixRewrite: '/' })).toBeUndefined();
    const cf = retryPolicyOf({ RetryOnConnectFailure: true })!;
    expect(cf.numRetries).toBe(1);
    expect(retriable(cf, { kind: 'connect' })).toBe(true);
    expect(retriable(cf, { kind: 'reset' })).toBe(false);
    expect(retriable(cf, { kind: 'status', status: 503, localAppUnreachable: false })).toBe(false);
    expect(retriable(cf, { kind: 'status', status: 502, localAppUnreachable: true })).toBe(true);
    const gw = retryPolicyOf({ NumRetries: 4, RetryOn: ['gateway-error'] })!;
    expect(gw.numRetries).toBe(4);
    expect([500, 502, 503, 504].map((status) => retriable(gw, { kind: 'status', status, localAppUnreachable: false }))).toEqual([false, true, true, true]);
    expect(retriable(gw, { kind: 'reset' })).toBe(true);
    const five = retryPolicyOf({ RetryOn: ['5xx'] })!;
    expect([500, 404].map((status) => retriable(five, { kind: 'status', status, localAppUnreachable: false }))).toEqual([true, false]);
    const codes = retryPolicyOf({ RetryOnStatusCodes: [429], RetryOn: ['retriable-4xx'] })!;
    expect([429, 409, 400].map((status) => retriable(codes, { kind: 'status', status, localAppUnreachable: false }))).toEqual([true, true, false]);
  });

  it('keeps a well-formed traceparent and starts one otherwise', () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    expect(traceparentOf(tp)).toBe(tp);
    expect(traceparentOf('garbage')).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(traceparentOf(undefined)).not.toBe(traceparentOf(undefined));
  });
});

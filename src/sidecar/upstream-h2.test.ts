// The h2 upstream listener over real mTLS: a client sidecar with a hand-built discovery chain in
// front of real server sidecars (grpc inbound), each before an h2c app that says which instance it
// is, called by a grpc-js client on one channel, a plain h2c client, and an HTTP/1.1 client.
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ChainResolverNode, CompiledChain } from '../config-entries/index.js';
import type { FlowRecord } from '../dataflow/index.js';
import { Sidecar, type SidecarTarget, type SidecarUpstream } from './sidecar.js';
import { ECHO_SERVICE, echoClient, grpc, type EchoClient } from './testing/grpc-echo.js';
import {
  TD,
  V1,
  V1_DC2,
  V2,
  apiUpstream,
  chainTarget,
  intention,
  policyOf,
  splitChain,
  startClientSidecar,
  startServerSidecar,
  targetOf,
  testPki,
  useStops,
  type TestPki,
} from './testing/fixtures.js';

const stops = useStops();
const allow = intention({ Action: 'allow' });
const policy = policyOf([allow]);

/** What an app was sent, per stream. */
interface Seen {
  instance: string;
  path: string;
  headers: http2.IncomingHttpHeaders;
  text: string;
  /** The request body's length. */
  bytes: number;
}

/** gRPC's length-prefixed message framing of a Msg { text = 1 } (protobuf: tag 0x0a, varint length). */
function frame(text: string): Buffer {
  const t = Buffer.from(text);
  const len: number[] = [];
  for (let n = t.length; ; n >>= 7) {
    if (n < 0x80) {
      len.push(n);
      break;
    }
    len.push((n & 0x7f) | 0x80);
  }
  const msg = Buffer.concat([Buffer.from([0x0a, ...len]), t]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** The first message's text field (enough for Msg and for CountRequest's n as a varint). */
function unframe(b: Buffer): { text: string; n: number } {
  if (b.length < 7) return { text: '', n: 0 };
  const msg = b.subarray(5, 5 + b.readUInt32BE(1));
  if (msg[0] === 0x08) return { text: '', n: msg[1] };
  return { text: msg.subarray(2, 2 + msg[1]).toString(), n: 0 };
}

/** Answers instead of the echo when it returns true. */
type Behaviour = (stream: http2.ServerHttp2Stream, seen: Seen) => boolean;

interface Instance {
  name: string;
  dc: string;
  sidecar: Sidecar;
  seen: Seen[];
}

/**
 * One api instance: an h2c app speaking gRPC's wire format by hand (so a test can make it fail as it
 * likes) and its server sidecar (grpc inbound). Say answers "<instance> <text>"; Count sends n messages.
 */
async function instance(p: TestPki, name: string, dc: string, behave?: Behaviour): Promise<Instance> {
  const inst = { name, dc, seen: [] } as unknown as Instance;
  const app = http2.createServer();
  app.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const all = Buffer.concat(chunks);
      const got = unframe(all);
      const s: Seen = { instance: name, path: String(headers[':path']), headers, text: got.text, bytes: all.length };
      inst.seen.push(s);
      if (behave?.(stream, s)) return;
      if (!String(headers['content-type'] ?? '').startsWith('application/grpc')) {
        stream.respond({ ':status': 200, 'content-type': 'application/json', 'x-app-says': 'hi' });
        stream.end(JSON.stringify(s));
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-app-says': 'hi' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'x-app-trailer': name }));
      if (s.path.endsWith('/Count')) for (let i = 0; i < got.n; i++) stream.write(frame(`${name} ${i}`));
      else stream.write(frame(`${name} ${got.text}`));
      stream.end();
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const sessions = new Set<http2.Http2Session>();
  app.on('session', (s) => sessions.add(s));
  stops.push(
    () =>
      new Promise<void>((r) => {
        for (const s of sessions) s.destroy();
        app.close(() => r());
      }),
  );
  inst.sidecar = await startServerSidecar(stops, p, { dc, appPort: (app.address() as net.AddressInfo).port, protocol: 'grpc', policy });
  return inst;
}

const SAY = `/${ECHO_SERVICE}/Say`;

/**
 * The chain under test: Routes[0] the Count method -> v2; Routes[1] /slow with a 500 ms timeout;
 * Routes[2] Say with `x-flaky` retried on unavailable; Routes[3] /old/ rewritten to /new/ with header
 * edits; Routes[4] the rest -> a 90/10 split of v1/v2. v1 fails over to dc2.
 */
function testChain(): CompiledChain {
  return splitChain('grpc', [
    { Definition: { Match: { HTTP: { PathExact: `/${ECHO_SERVICE}/Count` } } }, NextNode: `resolver:${V2}` },
    { Definition: { Match: { HTTP: { PathPrefix: '/slow' } }, Destination: { RequestTimeout: '500ms' } }, NextNode: `resolver:${V1}` },
    {
      Definition: {
        Match: { HTTP: { PathExact: SAY, Header: [{ Name: 'x-flaky', Present: true }] } },
        Destination: { NumRetries: 3, RetryOn: ['unavailable'] },
      },
      NextNode: `resolver:${V1}`,
    },
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
    protocol: 'grpc',
    chain: testChain(),
    targets,
  });
  if (opts.upstream) upstream = opts.upstream(upstream, { v1, v2, dc2 });
  const flows: FlowRecord[] = [];
  const web = await startClientSidecar(stops, p, { upstreams: [upstream], policy, options: { onFlow: (r) => flows.push(r) } });
  const port = web.upstreamPort('api');
  const client: EchoClient = echoClient('127.0.0.1', port);
  stops.push(() => client.close());
  const say = (text: string, md: Record<string, string> = {}) =>
    new Promise<{ code: number; text?: string; details?: string; trailer?: string }>((resolve) => {
      const m = new grpc.Metadata();
      for (const [k, v] of Object.entries(md)) m.set(k, v);
      let answer: { code: number; text?: string; details?: string } | undefined;
      let trailer: string | undefined;
      let statusSeen = false;
      const settle = () => answer && statusSeen && resolve({ ...answer, trailer });
      const c = client.say({ text }, m, (err, r) => {
        answer = err ? { code: err.code, details: err.details } : { code: 0, text: r?.text };
        settle();
      });
      // (grpc-js hands the trailers to 'status', which may come after the callback.)
      c.on('status', (st) => {
        trailer = st.metadata.get('x-app-trailer')[0] as string | undefined;
        statusSeen = true;
        settle();
      });
    });
  const h2 = http2.connect(`http://127.0.0.1:${port}`);
  h2.on('error', () => {});
  stops.push(() => void h2.destroy());
  const h2call = (path: string, headers: Record<string, string> = {}, send?: Buffer) =>
    new Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      const r = h2.request({ ':path': path, ...headers });
      let status = 0;
      let got: http2.IncomingHttpHeaders = {};
      let body = '';
      r.on('response', (h) => {
        status = Number(h[':status']);
        got = h;
      });
      r.on('data', (d) => (body += d));
      r.on('end', () => resolve({ status, headers: got, body }));
      r.on('error', reject);
      if (send) r.end(send);
      else r.end();
    });
  return { p, v1, v2, dc2, web, flows, say, client, h2call, port, upstream };
}

describe('the h2 upstream listener', () => {
  it('routes each gRPC call of one channel by its method path, and splits the rest 90/10, naming route and split', async () => {
    const m = await mesh();
    const counted = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = [];
      const c = m.client.count({ n: 3 });
      c.on('data', (x: { text: string }) => got.push(x.text));
      c.on('error', reject);
      c.on('end', () => resolve(got));
    });
    expect(counted).toEqual(['v2 0', 'v2 1', 'v2 2']);
    const said: string[] = [];
    for (let i = 0; i < 100; i++) {
      const r = await m.say(`n${i}`);
      expect(r.code).toBe(0);
      said.push(r.text!.split(' ')[0]);
    }
    const recs = m.flows.filter((f) => f.hop === 'client-sidecar');
    expect(recs).toHaveLength(101);
    expect(recs[0]).toMatchObject({
      verdict: 'allowed',
      http: { method: 'POST', path: `/${ECHO_SERVICE}/Count`, status: 200 },
      routing: { route: 'Routes[0]', split: '', target: V2 },
    });
    recs.slice(1).forEach((r, i) => {
      expect(r.routing?.route).toBe('Routes[4]');
      const toV2 = r.routing?.split === 'Splits[1]';
      expect(said[i] === 'v2').toBe(toV2);
      expect(r.routing?.target).toBe(toV2 ? V2 : V1);
    });
    const toV2 = said.filter((x) => x === 'v2').length;
    expect(toV2).toBeGreaterThan(0);
    expect(toV2).toBeLessThan(26);
    expect(new Set(said.filter((x) => x !== 'v2'))).toEqual(new Set(['v1a', 'v1b']));
    // The split's header edit reached the app; every call rode the same session, one stream each.
    const seen = [...m.v1[0].seen, ...m.v1[1].seen, ...m.v2.seen].filter((x) => x.path === SAY);
    expect(seen.every((x) => x.headers['x-split'] === (x.instance === 'v2' ? 'v2' : 'v1'))).toBe(true);
    expect(new Set(recs.map((r) => r.traceId)).size).toBeLessThanOrEqual(3);
    expect(recs[0].traceId).not.toBe('0'.repeat(32));
    expect(Math.max(...recs.map((r) => r.requestIndex))).toBeGreaterThan(1);
  });

  it('passes the app’s trailers on, a trailers-only error included', async () => {
    const m = await mesh({
      behave: (stream, seen) => {
        if (seen.text !== 'fail') return false;
        stream.respond(
          { ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no such thing', 'x-app-trailer': 'only' },
          { endStream: true },
        );
        return true;
      },
    });
    expect(await m.say('hi')).toMatchObject({ code: 0, trailer: expect.stringMatching(/^(v1a|v1b|v2)$/) });
    expect(await m.say('fail')).toMatchObject({ code: grpc.status.NOT_FOUND, details: 'no such thing', trailer: 'only' });
  });

  it('rewrites the prefix and edits request and response headers of an h2c request', async () => {
    const m = await mesh();
    const r = await m.h2call('/old/thing?q=1', { 'x-drop': 'secret', 'x-route': 'caller' });
    expect(r.status).toBe(200);
    const s = JSON.parse(r.body) as Seen;
    expect(s.path).toBe('/new/thing?q=1');
    expect(s.headers['x-route']).toBe('old');
    expect(s.headers['x-drop']).toBeUndefined();
    expect(s.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(r.headers['x-served-by']).toBe('mesh');
    expect(r.headers['x-app-says']).toBeUndefined();
    expect(m.flows.find((f) => f.hop === 'client-sidecar')?.routing).toMatchObject({ route: 'Routes[3]', target: V1 });
  });

  it("follows the resolver's LoadBalancer per stream: a made-up ring_hash cookie is set once, then sticks", async () => {
    const m = await mesh({
      upstream: (u) => {
        const chain = structuredClone(u.chain!);
        (chain.Nodes[`resolver:${V1}`] as ChainResolverNode).LoadBalancer = {
          Policy: 'ring_hash',
          HashPolicies: [{ Field: 'cookie', FieldValue: 'sticky', CookieConfig: { TTL: '10m' } }],
        };
        return { ...u, chain };
      },
    });
    const first = await m.h2call('/old/a');
    const set = first.headers['set-cookie'];
    expect(set).toHaveLength(1);
    expect(set![0]).toMatch(/^sticky="[^"]+"; Max-Age=600; HttpOnly$/);
    const cookie = set![0].split(';')[0];
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await m.h2call('/old/a', { cookie });
      expect(r.headers['set-cookie']).toBeUndefined();
      seen.add((JSON.parse(r.body) as Seen).instance);
    }
    expect(seen.size).toBe(1);
    expect(seen.has((JSON.parse(first.body) as Seen).instance)).toBe(true);
  });

  it('streams a request body past the retry buffer through whole, counted in the record', async () => {
    const m = await mesh();
    const big = Buffer.alloc(300 * 1024, 7);
    const r = await m.h2call('/old/upload', { ':method': 'POST' }, big);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Seen).bytes).toBe(big.length);
    expect(m.flows.find((f) => f.hop === 'client-sidecar')).toMatchObject({
      verdict: 'allowed',
      bytesIn: big.length,
      routing: { route: 'Routes[3]', retries: 0 },
    });
  });

  it('takes HTTP/1.1 on the same port, routed per request as an http upstream', async () => {
    const m = await mesh();
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port: m.port, path: '/old/x', agent: false }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, body }));
        })
        .on('error', reject),
    );
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body) as Seen).path).toBe('/new/x');
  });

  it('retries a trailers-only UNAVAILABLE as RetryOn unavailable says, and the record counts the retries', async () => {
    let failuresLeft = 2;
    const m = await mesh({
      behave: (stream, seen) => {
        if (seen.headers['x-flaky'] === undefined || failuresLeft <= 0) return false;
        failuresLeft--;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'busy' }, { endStream: true });
        return true;
      },
    });
    const r = await m.say('again', { 'x-flaky': '1' });
    expect(r).toMatchObject({ code: 0, text: expect.stringMatching(/^v1[ab] again$/) });
    const rec = m.flows.filter((f) => f.hop === 'client-sidecar')[0];
    expect(rec).toMatchObject({ verdict: 'allowed', routing: { route: 'Routes[2]', retries: 2, target: V1 } });
    expect(rec.reason).toMatch(/after grpc-status 14 from 127\.0\.0\.1:\d+; grpc-status 0$/);
    expect(m.v1[0].seen.length + m.v1[1].seen.length).toBe(3);
    // A method whose route has no retry policy hears the UNAVAILABLE.
    failuresLeft = 1;
    m.flows.length = 0;
    const plain = await new Promise<number>((resolve) => {
      const md = new grpc.Metadata();
      md.set('x-flaky', '1');
      m.client.denied({ text: 'x' }, md, (err) => resolve(err?.code ?? 0));
    });
    expect(plain).toBe(grpc.status.UNAVAILABLE);
    expect(failuresLeft).toBe(0);
    expect(m.flows.filter((f) => f.hop === 'client-sidecar')[0]).toMatchObject({ routing: { route: 'Routes[4]', retries: 0 } });
  });

  it('ejects an instance after consecutive UNAVAILABLE answers (PassiveHealthCheck), counted as Envoy counts gRPC', async () => {
    const m = await mesh({
      behave: (stream, seen) => {
        if (seen.instance !== 'v1b' || seen.text !== 'sick') return false;
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '14', 'grpc-message': 'sick' }, { endStream: true });
        return true;
      },
      upstream: (u) => ({ ...u, passiveHealthCheck: { MaxFailures: 3, MaxEjectionPercent: 50 } }),
    });
    const codes: number[] = [];
    // (x-flaky picks Routes[2]: v1 alone. Its policy retries unavailable: the caller hears only the last of a run.)
    for (let i = 0; i < 20; i++) codes.push((await m.say('sick', { 'x-flaky': '1' })).code);
    expect(m.v1[1].seen.filter((x) => x.text === 'sick')).toHaveLength(3);
    expect(codes.slice(6)).toEqual(Array(14).fill(0));
  });

  it('answers a timed-out gRPC call with a trailers-only UNAVAILABLE, an h2c request with 504', async () => {
    const m = await mesh({
      behave: (stream, seen) => {
        if (!seen.path.startsWith('/slow')) return false;
        const t = setTimeout(() => !stream.destroyed && stream.respond({ ':status': 200 }, { endStream: true }), 3000);
        stream.once('close', () => clearTimeout(t));
        return true;
      },
    });
    const slow = new grpc.Client(`127.0.0.1:${m.port}`, grpc.credentials.createInsecure());
    stops.push(() => slow.close());
    const got = await new Promise<grpc.ServiceError | null>((resolve) =>
      slow.makeUnaryRequest(
        '/slow/Call',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.alloc(0),
        (err) => resolve(err),
      ),
    );
    expect(got?.code).toBe(grpc.status.UNAVAILABLE);
    expect(got?.details).toBe('upstream request timeout');
    const r = await m.h2call('/slow/x');
    expect(r.status).toBe(504);
    expect(JSON.parse(r.body)).toEqual({ Error: 'ISTHMUS_ERR_TIMEOUT', Message: expect.stringContaining('within 500 ms (Routes[1] RequestTimeout)') });
    const recs = m.flows.filter((f) => f.hop === 'client-sidecar');
    expect(recs[0]).toMatchObject({ verdict: 'error', http: { status: 200 }, routing: { route: 'Routes[1]', target: V1 } });
    expect(recs[0].reason).toMatch(/within 500 ms .*grpc-status 14$/);
    expect(recs[1]).toMatchObject({ verdict: 'error', http: { status: 504 } });
  });

  it('fails over to dc2 when every v1 endpoint refuses, then answers UNAVAILABLE naming the connect failure when dc2 refuses too', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(port));
      });
    });
    const refuse = (t: SidecarTarget): SidecarTarget => ({ ...t, endpoints: t.endpoints.map((e) => ({ ...e, port: closed })) });
    const m = await mesh({ upstream: (u) => ({ ...u, targets: u.targets!.map((t) => (t.id === V1 ? refuse(t) : t)) }) });
    // (Routes[2] goes to v1 alone: the split would send a tenth to v2.)
    const r = await m.say('x', { 'x-flaky': '1' });
    expect(r).toMatchObject({ code: 0, text: 'dc2 x' });
    const rec = m.flows.filter((f) => f.hop === 'client-sidecar')[0];
    expect(rec.routing).toMatchObject({ target: V1_DC2, failover: expect.stringContaining('connect failure at 127.0.0.1:') });

    await m.web.update({ upstreams: [{ ...m.upstream, targets: m.upstream.targets!.map(refuse) }] });
    const all = await m.say('y', { 'x-flaky': '1' });
    expect(all.code).toBe(grpc.status.UNAVAILABLE);
    expect(all.details).toMatch(/^upstream api unreachable: connect failure at 127\.0\.0\.1:\d+ \(ECONNREFUSED\)$|^no healthy endpoint for upstream api$/);
  });

  it('swaps the listener between http and grpc on a push, on the same port', async () => {
    const m = await mesh();
    const port = m.port;
    await m.web.update({ upstreams: [{ ...m.upstream, protocol: 'http' }] });
    expect(m.web.upstreamPort('api')).toBe(port);
    // HTTP/1.1 proxy now: h2c prior knowledge is not what it speaks.
    const h2 = http2.connect(`http://127.0.0.1:${port}`);
    const refused = await new Promise<boolean>((resolve) => {
      h2.on('error', () => resolve(true));
      h2.on('connect', () => {
        const r = h2.request({ ':path': '/' });
        r.on('response', () => resolve(false));
        r.on('error', () => resolve(true));
        r.end();
      });
    });
    h2.destroy();
    expect(refused).toBe(true);
    await m.web.update({ upstreams: [m.upstream] });
    expect(m.web.upstreamPort('api')).toBe(port);
    const c = echoClient('127.0.0.1', port);
    stops.push(() => c.close());
    const r = await new Promise<number>((resolve) => c.say({ text: 'z' }, new grpc.Metadata(), (err) => resolve(err?.code ?? 0)));
    expect(r).toBe(0);
  });
});

describe('the h2 upstream listener’s sessions', () => {
  /** An endpoint that is only an h2 server over mTLS with api's identity: it counts sessions, refuses and goes away as told. */
  async function rawEndpoint() {
    const p = await testPki();
    const api = await p.leaf('api', 'dc1');
    let refuseLeft = 1;
    const sessions: http2.ServerHttp2Session[] = [];
    const srv = http2.createSecureServer({
      key: api.keyPem,
      cert: [api.certPem.trim(), ...p.bundle.chain].join('\n'),
      ca: p.bundle.roots,
      requestCert: true,
    });
    srv.on('session', (s) => sessions.push(s));
    srv.on('stream', (stream, headers) => {
      stream.on('error', () => {});
      const path = String(headers[':path']);
      if (path.startsWith('/refuse') && refuseLeft-- > 0) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      stream.respond({ ':status': 200, 'content-type': 'application/json' });
      stream.end(JSON.stringify({ session: sessions.indexOf(stream.session as http2.ServerHttp2Session), path }));
      // After answering, the server says it takes no more streams on this session.
      if (path === '/bye') stream.session!.close();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    stops.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sessions) s.destroy();
          srv.close(() => r());
        }),
    );
    const T = 'api.default.dc1';
    const target: SidecarTarget = {
      id: T,
      datacenter: 'dc1',
      healthy: true,
      healthAgeMs: 0,
      endpoints: [{ host: '127.0.0.1', port: (srv.address() as net.AddressInfo).port, sni: `${T}.internal.${TD}`, spiffeId: api.spiffeId }],
    };
    const chain: CompiledChain = {
      ServiceName: 'api',
      Namespace: 'default',
      Datacenter: 'dc1',
      Protocol: 'http2',
      StartNode: 'router:api.default',
      Nodes: {
        'router:api.default': {
          Type: 'router',
          Name: 'api.default',
          Routes: [
            {
              Definition: { Match: { HTTP: { PathPrefix: '/refuse-retried' } }, Destination: { NumRetries: 1, RetryOn: ['refused-stream'] } },
              NextNode: `resolver:${T}`,
            },
            { Definition: { Match: { HTTP: { PathPrefix: '/' } } }, NextNode: `resolver:${T}` },
          ],
        },
        [`resolver:${T}`]: { Type: 'resolver', Name: T, Resolver: { Default: true, ConnectTimeout: '5s', Target: T } },
      },
      Targets: { [T]: { ...chainTarget(T), ServiceSubset: '' } },
    };
    const flows: FlowRecord[] = [];
    const web = await startClientSidecar(stops, p, {
      upstreams: [
        apiUpstream({
          protocol: 'http2',
          endpoints: target.endpoints,
          chain,
          targets: [target],
        }),
      ],
      policy,
      options: { onFlow: (r) => flows.push(r) },
    });
    const h2 = http2.connect(`http://127.0.0.1:${web.upstreamPort('api')}`);
    h2.on('error', () => {});
    stops.push(() => void h2.destroy());
    const call = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const r = h2.request({ ':path': path });
        let status = 0;
        let body = '';
        r.on('response', (h) => (status = Number(h[':status'])));
        r.on('data', (d) => (body += d));
        r.on('end', () => resolve({ status, body }));
        r.on('error', reject);
        r.end();
      });
    return { call, flows, sessions, refuse: (n: number) => (refuseLeft = n) };
  }

  it('multiplexes calls on one session, and after the server’s GOAWAY sends the next on a new one', async () => {
    const e = await rawEndpoint();
    const first = await Promise.all(['/a', '/b', '/c'].map((x) => e.call(x)));
    expect(first.map((r) => JSON.parse(r.body) as { session: number }).map((b) => b.session)).toEqual([0, 0, 0]);
    expect((JSON.parse((await e.call('/bye')).body) as { session: number }).session).toBe(0);
    const after = await e.call('/after');
    expect(after.status).toBe(200);
    expect((JSON.parse(after.body) as { session: number }).session).toBe(1);
    expect(e.sessions).toHaveLength(2);
    const recs = e.flows.filter((f) => f.hop === 'client-sidecar');
    expect(recs.map((r) => r.requestIndex)).toEqual([1, 2, 3, 4, 1]);
    expect(recs[4].traceId).not.toBe(recs[0].traceId);
  });

  it('retries a refused stream as RetryOn refused-stream says, and answers 503 without the policy', async () => {
    const e = await rawEndpoint();
    const r = await e.call('/refuse-retried');
    expect(r.status).toBe(200);
    const rec = e.flows.filter((f) => f.hop === 'client-sidecar')[0];
    expect(rec).toMatchObject({ verdict: 'allowed', routing: { route: 'Routes[0]', retries: 1 } });
    expect(rec.reason).toMatch(/^answered 200 after stream refused at 127\.0\.0\.1:\d+ \(REFUSED_STREAM\)$/);
    e.refuse(1);
    const plain = await e.call('/refuse-plain');
    expect(plain.status).toBe(503);
    expect(JSON.parse(plain.body)).toEqual({ Error: 'ISTHMUS_ERR_UNAVAILABLE', Message: expect.stringContaining('stream refused at 127.0.0.1:') });
  });
});
